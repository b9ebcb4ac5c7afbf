package pathidle

import (
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	dst = DestOf(netip.MustParseAddrPort("198.51.100.7:5432"))
	t0  = time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
)

func s(sec int) time.Duration { return time.Duration(sec) * time.Second }

func TestDestKeying(t *testing.T) {
	for _, tc := range []struct {
		name, remote string
		local        uint16 // 0: outbound (DestOf), else inbound to this local port (ClientsOf)
		want         string
	}{
		{"outbound v4", "198.51.100.7:5432", 0, "198.51.100.0/24:5432"},
		{"outbound v4-mapped", "[::ffff:192.0.2.9]:6379", 0, "192.0.2.0/24:6379"},
		{"outbound v6", "[2001:db8:2::2]:443", 0, "[2001:db8:2::/64]:443"},
		{"inbound v4: the client's port is dropped", "198.51.100.7:43118", 5432, "clients 198.51.100.0/24 → :5432"},
		{"inbound v4, another client port", "198.51.100.200:43134", 5432, "clients 198.51.100.0/24 → :5432"},
		{"inbound v4-mapped", "[::ffff:198.51.100.7]:43118", 5432, "clients 198.51.100.0/24 → :5432"},
		{"inbound v6", "[2001:db8:2::2]:50001", 443, "clients 2001:db8:2::/64 → :443"},
	} {
		remote := netip.MustParseAddrPort(tc.remote)
		d := DestOf(remote)
		if tc.local != 0 {
			d = ClientsOf(remote, tc.local)
		}
		if got := d.String(); got != tc.want {
			t.Errorf("%s: %s = %q, want %q", tc.name, tc.remote, got, tc.want)
		}
	}
}

// TestDirectionsApart: a server's accepted connections from one client
// network share one destination whatever their ephemeral ports, and it is
// not the destination of an outbound connection to that network's same port.
func TestDirectionsApart(t *testing.T) {
	tb := New(Config{Now: func() time.Time { return t0 }})
	for i, idle := range []int{10, 20, 40, 50} {
		remote := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i)}), uint16(43000+i))
		o := Alive
		if idle > 30 {
			o = Dead
		}
		tb.Add(Sample{Dest: ClientsOf(remote, 5432), Idle: s(idle), Outcome: o, Comm: "postgres"})
	}
	tb.Add(Sample{Dest: DestOf(netip.MustParseAddrPort("198.51.100.9:5432")), Idle: s(5), Outcome: Alive, Comm: "psql"})
	es := tb.Estimates()
	if len(es) != 2 {
		t.Fatalf("%d destinations, want 2: %+v", len(es), es)
	}
	in, out := es[0], es[1]
	if in.Dest.Dir != Inbound || in.Dest.Port != 5432 || in.Alive != 2 || in.Dead != 2 || !in.Ready || in.Lower != s(20) || in.Upper != s(40) {
		t.Errorf("inbound: %s (%+v), want 2 alive and 2 dead samples, (20 s, 40 s]", in.Text(), in.Dest)
	}
	if len(in.Advice) != 1 || in.Advice[0].Owner != "postgres" {
		t.Errorf("inbound advice = %+v, want PostgreSQL's", in.Advice)
	}
	if out.Dest.Dir != Outbound || out.Dest.String() != "198.51.100.0/24:5432" || out.Alive != 1 || out.Dead != 0 {
		t.Errorf("outbound: %s (%+v), want its own destination with its one sample", out.Text(), out.Dest)
	}
}

// fill adds alive and dead samples (idle ages in seconds) to dst.
func fill(tb *Table, alive, dead []int, comm string) {
	for _, a := range alive {
		tb.Add(Sample{Dest: dst, Idle: s(a), Outcome: Alive, Comm: comm})
	}
	for _, d := range dead {
		tb.Add(Sample{Dest: dst, Idle: s(d), Outcome: Dead, Comm: comm})
	}
}

func TestEstimate(t *testing.T) {
	ignore := cmpopts.IgnoreFields(Estimate{}, "Dest", "Advice", "Why")
	for _, tc := range []struct {
		name        string
		alive, dead []int
		want        Estimate
		why         string // substring of Why
	}{{
		name: "brackets the timeout", alive: []int{6, 12, 16}, dead: []int{26, 32, 40},
		want: Estimate{Alive: 3, Dead: 3, MaxAlive: s(16), MinDead: s(26), Ready: true, Lower: s(16), Upper: s(26),
			Keepalive: Keepalive{Idle: s(12), Interval: s(4), Count: 3}},
	}, {
		name: "AWS-like 350 s", alive: []int{120, 290}, dead: []int{360, 400},
		want: Estimate{Alive: 2, Dead: 2, MaxAlive: s(290), MinDead: s(360), Ready: true, Lower: s(290), Upper: s(360),
			Keepalive: Keepalive{Idle: s(230), Interval: s(76), Count: 3}},
	}, {
		name: "overlap: a peer died young", alive: []int{6, 30}, dead: []int{10, 40},
		want: Estimate{Alive: 2, Dead: 2, MaxAlive: s(30), MinDead: s(10)}, why: "overlap",
	}, {
		name: "equal ages overlap", alive: []int{20, 5}, dead: []int{20, 30},
		want: Estimate{Alive: 2, Dead: 2, MaxAlive: s(20), MinDead: s(20)}, why: "overlap",
	}, {
		name: "no dead side", alive: []int{6, 12, 16},
		want: Estimate{Alive: 3, MaxAlive: s(16)}, why: "no connection confirmed dead",
	}, {
		name: "no alive side", dead: []int{26, 32},
		want: Estimate{Dead: 2, MinDead: s(26)}, why: "no connection proved alive",
	}, {
		name: "one dead sample is not enough", alive: []int{6, 12}, dead: []int{26},
		want: Estimate{Alive: 2, Dead: 1, MaxAlive: s(12), MinDead: s(26)}, why: "not enough evidence: 2 alive and 1 dead samples, need 2 and 2",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tb := New(Config{Now: func() time.Time { return t0 }})
			fill(tb, tc.alive, tc.dead, "")
			es := tb.Estimates()
			if len(es) != 1 {
				t.Fatalf("got %d estimates, want 1", len(es))
			}
			got := es[0]
			if diff := cmp.Diff(tc.want, got, ignore, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("estimate (-want +got):\n%s", diff)
			}
			if tc.why == "" && got.Why != "" || !strings.Contains(got.Why, tc.why) {
				t.Errorf("Why = %q, want it to contain %q", got.Why, tc.why)
			}
			if got.Ready != (len(got.Advice) > 0) {
				t.Errorf("Ready %v with advice %v", got.Ready, got.Advice)
			}
		})
	}
}

func TestEstimateText(t *testing.T) {
	tb := New(Config{Now: func() time.Time { return t0 }})
	fill(tb, []int{6, 12, 16}, []int{26, 32, 40}, "postgres")
	e := tb.Estimates()[0]
	want := "198.51.100.0/24:5432: alive at 16 s idle (3 samples), dead from 26 s (3): the path forgets idle flows after more than 16 s and at most 26 s; keep keepalive idle below 16 s, e.g. 12 s"
	if got := e.Text(); got != want {
		t.Errorf("Text:\n got %s\nwant %s", got, want)
	}
	if len(e.Advice) != 1 || e.Advice[0].Owner != "postgres" || !strings.Contains(e.Advice[0].Setting, "tcp_keepalives_idle = 12") {
		t.Errorf("advice = %+v, want postgres tcp_keepalives_idle = 12", e.Advice)
	}
}

func TestAdviceFor(t *testing.T) {
	k := Recommend(s(290))
	for _, tc := range []struct {
		owners []string
		want   []string // Owner: substring of Setting
	}{
		{[]string{"postgres"}, []string{"postgres:tcp_keepalives_idle = 230"}},
		{[]string{"redis-server"}, []string{"redis-server:tcp-keepalive 230"}},
		{[]string{"nginx"}, []string{"nginx:so_keepalive=230s:76s:3"}},
		{[]string{"haproxy"}, []string{"haproxy:clitcpka-idle 230s"}},
		{[]string{"java"}, []string{"java:TCP_KEEPIDLE, 230"}},
		{[]string{"myapp"}, []string{"sysctl:net.ipv4.tcp_keepalive_time=230"}},
		{nil, []string{"sysctl:net.ipv4.tcp_keepalive_time=230"}},
		{[]string{"myapp", "java", "redis-server"}, []string{"java:TCP_KEEPIDLE", "redis-server:tcp-keepalive"}},
	} {
		got := AdviceFor(tc.owners, k)
		if len(got) != len(tc.want) {
			t.Errorf("AdviceFor(%v) = %+v, want %d entries", tc.owners, got, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			owner, sub, _ := strings.Cut(w, ":")
			if got[i].Owner != owner || !strings.Contains(got[i].Setting, sub) {
				t.Errorf("AdviceFor(%v)[%d] = %+v, want %s with %q", tc.owners, i, got[i], owner, sub)
			}
		}
	}
}

func TestRecommend(t *testing.T) {
	for _, tc := range []struct {
		lower time.Duration
		want  Keepalive
	}{
		{s(16), Keepalive{s(12), s(4), 3}},
		{s(1), Keepalive{s(1), s(1), 3}},
		{s(240), Keepalive{s(190), s(63), 3}},
		{s(1200), Keepalive{s(960), s(320), 3}},
	} {
		if got := Recommend(tc.lower); got != tc.want {
			t.Errorf("Recommend(%s) = %+v, want %+v", tc.lower, got, tc.want)
		}
		if got := Recommend(tc.lower); got.Idle >= tc.lower && tc.lower > time.Second {
			t.Errorf("Recommend(%s).Idle = %s, not below the lower bound", tc.lower, got.Idle)
		}
	}
}

func TestBounds(t *testing.T) {
	now := t0
	tb := New(Config{MaxDests: 3, MaxSamples: 4, MaxAge: time.Hour, Now: func() time.Time { return now }})
	dest := func(i int) Dest {
		return DestOf(netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), uint16(1000+i)))
	}
	for i := range 5 {
		now = now.Add(time.Second)
		tb.Add(Sample{Dest: dest(i), Idle: s(10), Outcome: Alive})
	}
	if tb.Len() != 3 {
		t.Fatalf("Len = %d, want the cap 3", tb.Len())
	}
	var got []string
	for _, e := range tb.Estimates() {
		got = append(got, e.Dest.String())
	}
	if diff := cmp.Diff([]string{"203.0.113.0/24:1002", "203.0.113.0/24:1003", "203.0.113.0/24:1004"}, got); diff != "" {
		t.Errorf("the oldest destinations should go first (-want +got):\n%s", diff)
	}
	// A destination updated again is the newest: the next one to come
	// pushes out the one updated longest ago, not the first one added.
	now = now.Add(time.Second)
	tb.Add(Sample{Dest: dest(2), Idle: s(10), Outcome: Alive})
	now = now.Add(time.Second)
	tb.Add(Sample{Dest: dest(5), Idle: s(10), Outcome: Alive})
	got = got[:0]
	for _, e := range tb.Estimates() {
		got = append(got, e.Dest.String())
	}
	if diff := cmp.Diff([]string{"203.0.113.0/24:1002", "203.0.113.0/24:1004", "203.0.113.0/24:1005"}, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("after updating the oldest destination (-want +got):\n%s", diff)
	}
	// Per side: the newest MaxSamples stay.
	for i := range 10 {
		tb.Add(Sample{Dest: dest(4), Idle: s(i), Outcome: Dead})
	}
	for _, e := range tb.Estimates() {
		if e.Dest == dest(4) && (e.Dead != 4 || e.MinDead != s(6)) {
			t.Errorf("dead side = %d samples from %s, want the newest 4 from 6 s", e.Dead, e.MinDead)
		}
	}
	// Samples age out, and an empty destination is forgotten.
	now = now.Add(2 * time.Hour)
	tb.Add(Sample{Dest: dest(9), Idle: s(1), Outcome: Alive})
	es := tb.Estimates()
	if len(es) != 1 || es[0].Dest != dest(9) {
		t.Errorf("after MaxAge: %+v, want only the fresh destination", es)
	}
}

func TestOwnersBounded(t *testing.T) {
	tb := New(Config{Now: func() time.Time { return t0 }})
	for _, c := range []string{"a", "b", "a", "c", "d", "e", ""} {
		tb.Add(Sample{Dest: dst, Idle: s(1), Outcome: Alive, Comm: c})
	}
	if diff := cmp.Diff([]string{"b", "c", "d", "e"}, tb.Estimates()[0].Owners); diff != "" {
		t.Errorf("owners (-want +got):\n%s", diff)
	}
}

func TestOrder(t *testing.T) {
	tb := New(Config{Now: func() time.Time { return t0 }})
	other := DestOf(netip.MustParseAddrPort("203.0.113.5:80"))
	for range 5 {
		tb.Add(Sample{Dest: other, Idle: s(3), Outcome: Alive})
	}
	fill(tb, []int{6, 12}, []int{26, 32}, "")
	es := tb.Estimates()
	if len(es) != 2 || es[0].Dest != dst || es[1].Dest != other {
		t.Errorf("order = %v, want the ready estimate first, then more evidence", es)
	}
}

// TestEvictionMatchesOldestUpdate drives a small table with random samples
// and expiries and checks after each step that it holds exactly the
// destinations a plain model keeps: at the cap, the one updated longest ago
// goes; after MaxAge, the ones without samples go.
func TestEvictionMatchesOldestUpdate(t *testing.T) {
	now := t0
	const maxDests = 5
	tb := New(Config{MaxDests: maxDests, MaxAge: time.Minute, Now: func() time.Time { return now }})
	model := map[Dest]time.Time{} // destination -> last update
	rng := rand.New(rand.NewPCG(1, 2))
	dest := func(i int) Dest {
		return DestOf(netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, 1}), uint16(i)))
	}
	for step := range 2000 {
		now = now.Add(time.Second)
		if rng.IntN(50) == 0 {
			now = now.Add(2 * time.Minute) // every sample ages out
			tb.Estimates()
			clear(model)
			continue
		}
		d := dest(rng.IntN(12))
		if _, ok := model[d]; !ok && len(model) == maxDests {
			var oldest Dest
			for k, at := range model {
				if oldest == (Dest{}) || at.Before(model[oldest]) {
					oldest = k
				}
			}
			delete(model, oldest)
		}
		model[d] = now
		tb.Add(Sample{Dest: d, Idle: s(1), Outcome: Alive})
		var got []Dest
		for _, e := range tb.Estimates() {
			got = append(got, e.Dest)
		}
		want := slices.Collect(maps.Keys(model))
		byText := func(a, b Dest) int { return strings.Compare(a.String(), b.String()) }
		slices.SortFunc(got, byText)
		slices.SortFunc(want, byText)
		if !slices.Equal(got, want) {
			t.Fatalf("step %d: table holds %v, want %v", step, got, want)
		}
	}
}
