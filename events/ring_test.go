package events

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)

// clock is a test clock that moves a second per reading.
type clock struct{ t time.Time }

func (c *clock) now() time.Time {
	c.t = c.t.Add(time.Second)
	return c.t
}

func ev(kind Kind, netns, comm, unit, verdict string) Event {
	return Event{Kind: kind, Netns: netns, Comm: comm, Unit: unit, Verdict: verdict, Reasons: []string{"idle"}}
}

// seqs returns the sequence numbers of a page's events.
func seqs(p Page) []uint64 {
	out := []uint64{}
	for _, e := range p.Events {
		out = append(out, e.Seq)
	}
	return out
}

func TestRingNumbersStampsAndEvicts(t *testing.T) {
	c := &clock{t: t0}
	r := NewRing(3, c.now)
	for i := 0; i < 5; i++ {
		got := r.Add(ev(Suspect, "host", "app", "", "unprobed"))
		if got.Seq != uint64(i+1) || !got.Time.Equal(t0.Add(time.Duration(i+1)*time.Second)) {
			t.Fatalf("event %d: seq %d time %v", i, got.Seq, got.Time)
		}
	}
	// A time given by the caller is kept.
	at := t0.Add(time.Hour)
	if got := r.Add(Event{Kind: Gone, Time: at}); !got.Time.Equal(at) || got.Seq != 6 {
		t.Errorf("explicit time: %+v", got)
	}
	p := r.Query(Query{})
	if diff := cmp.Diff([]uint64{4, 5, 6}, seqs(p)); diff != "" {
		t.Errorf("held (-want +got):\n%s", diff)
	}
	if p.Oldest != 4 || p.Latest != 6 || p.Next != 6 || p.More || p.Missed {
		t.Errorf("page: oldest %d latest %d next %d more %v missed %v", p.Oldest, p.Latest, p.Next, p.More, p.Missed)
	}
	st := r.Stats()
	if st.Evicted != 3 || st.Recorded[Suspect.index()] != 5 || st.Recorded[Gone.index()] != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRingQuery(t *testing.T) {
	c := &clock{t: t0}
	r := NewRing(100, c.now)
	r.Add(ev(Suspect, "host", "postgres", "postgresql.service", "unprobed")) // 1 at t0+1s
	r.Add(ev(Suspect, "blue", "curl", "", "unprobed"))                       // 2 at t0+2s
	r.Add(ev(Ghost, "host", "postgres", "postgresql.service", "silent"))     // 3
	r.Add(ev(Ghost, "blue", "curl", "", "reset"))                            // 4
	r.Add(ev(Alive, "blue", "curl", "", "alive"))                            // 5
	r.Add(ev(Killed, "host", "postgres", "postgresql.service", "silent"))    // 6
	r.Add(ev(Gone, "host", "", "", "silent"))                                // 7 at t0+7s

	tests := []struct {
		name       string
		q          Query
		want       []uint64
		next       uint64
		more       bool
		missedWant bool
	}{
		{name: "all", q: Query{}, want: []uint64{1, 2, 3, 4, 5, 6, 7}, next: 7},
		{name: "newest two", q: Query{Limit: 2}, want: []uint64{6, 7}, next: 7, more: true},
		{name: "since seq pages forward", q: Query{SinceSeq: 2, Limit: 2}, want: []uint64{3, 4}, next: 4, more: true},
		{name: "from the start", q: Query{Forward: true, Limit: 2}, want: []uint64{1, 2}, next: 2, more: true},
		{name: "last page", q: Query{SinceSeq: 4, Limit: 3}, want: []uint64{5, 6, 7}, next: 7},
		{name: "nothing new", q: Query{SinceSeq: 7}, want: []uint64{}, next: 7},
		{name: "since time is inclusive", q: Query{SinceTime: t0.Add(6 * time.Second)}, want: []uint64{6, 7}, next: 7},
		{name: "kind", q: Query{Kinds: []Kind{Ghost, Gone}}, want: []uint64{3, 4, 7}, next: 7},
		{name: "netns", q: Query{Netns: []string{"blue"}}, want: []uint64{2, 4, 5}, next: 5},
		{name: "verdict", q: Query{Verdicts: []string{"silent", "reset"}}, want: []uint64{3, 4, 6, 7}, next: 7},
		{name: "owner by unit", q: Query{Owners: []string{"postgresql.service"}}, want: []uint64{1, 3, 6}, next: 6},
		{name: "owner by comm", q: Query{Owners: []string{"postgres"}}, want: []uint64{1, 3, 6}, next: 6},
		{name: "owner unknown", q: Query{Owners: []string{"unknown"}}, want: []uint64{7}, next: 7},
		{name: "filters and", q: Query{Netns: []string{"blue"}, Kinds: []Kind{Ghost}}, want: []uint64{4}, next: 4},
		{name: "no match", q: Query{Netns: []string{"red"}}, want: []uint64{}, next: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := r.Query(tt.q)
			if diff := cmp.Diff(tt.want, seqs(p)); diff != "" {
				t.Errorf("seqs (-want +got):\n%s", diff)
			}
			if p.Next != tt.next || p.More != tt.more || p.Missed != tt.missedWant {
				t.Errorf("next %d more %v missed %v, want %d %v %v", p.Next, p.More, p.Missed, tt.next, tt.more, tt.missedWant)
			}
		})
	}
}

func TestRingMissed(t *testing.T) {
	c := &clock{t: t0}
	r := NewRing(2, c.now)
	for range 5 {
		r.Add(ev(Suspect, "host", "a", "", "unprobed"))
	}
	// Held: 4, 5 (at t0+4s, t0+5s).
	for _, tt := range []struct {
		q      Query
		missed bool
		want   []uint64
	}{
		{Query{SinceSeq: 3}, false, []uint64{4, 5}},
		{Query{SinceSeq: 2}, true, []uint64{4, 5}},
		{Query{SinceTime: t0.Add(4 * time.Second)}, false, []uint64{4, 5}},
		{Query{SinceTime: t0.Add(2 * time.Second)}, true, []uint64{4, 5}},
	} {
		p := r.Query(tt.q)
		if p.Missed != tt.missed || !cmp.Equal(tt.want, seqs(p)) {
			t.Errorf("%+v: missed %v seqs %v, want %v %v", tt.q, p.Missed, seqs(p), tt.missed, tt.want)
		}
	}
}

func TestRingQueryCopies(t *testing.T) {
	r := NewRing(4, nil)
	rtt := 0.5
	e := ev(Ghost, "host", "a", "", "silent")
	e.RTTSeconds = &rtt
	r.Add(e)
	p := r.Query(Query{})
	p.Events[0].Reasons[0] = "changed"
	*p.Events[0].RTTSeconds = 9
	again := r.Query(Query{})
	if again.Events[0].Reasons[0] != "idle" || *again.Events[0].RTTSeconds != 0.5 {
		t.Errorf("a query's events share memory with the ring: %+v", again.Events[0])
	}
}

func TestOwner(t *testing.T) {
	for _, tt := range []struct{ pod, unit, comm, want string }{
		{"", "", "", "unknown"},
		{"", "", "curl", "curl"},
		{"", "nginx.service", "nginx", "nginx.service"},
		{"default/web-1", "kubelet.service", "nginx", "default/web-1"},
	} {
		if got := Owner(tt.pod, tt.unit, tt.comm); got != tt.want {
			t.Errorf("Owner(%q, %q, %q) = %q, want %q", tt.pod, tt.unit, tt.comm, got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tt := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.RingSize = 0 }, "events: ring_size: 0: want 1 to 1000000"},
		{func(c *Config) { c.RingSize = MaxRingSize + 1 }, "events: ring_size: 1000001: want 1 to 1000000"},
		{func(c *Config) { c.File = "events.jsonl" }, `events: file: "events.jsonl": want an absolute path`},
		{func(c *Config) { c.File = "/var/log/../x.jsonl" }, `events: file: path "/var/log/../x.jsonl" is not clean`},
		{func(c *Config) { c.FileMaxBytes = 100 }, "events: file_max_bytes: 100: want at least 4096"},
		{func(c *Config) { c.FilesKept = 0 }, "events: files_kept: 0: want 1 to 100"},
	} {
		c := DefaultConfig()
		tt.mod(&c)
		err := c.Validate()
		if err == nil || err.Error() != tt.want {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}
}
