package events

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// batchEvent is the i-th event of a test batch; events carry fixed times so
// that a ring fed one by one and one fed a batch stamp them alike.
func batchEvent(i int) Event {
	return Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: Suspect, Netns: "srv", Cookie: uint64(1000 + i),
		Local: fmt.Sprintf("192.0.2.1:%d", 1000+i), Reasons: []string{"idle"}}
}

// TestAddBatchAsAdds: a batch leaves the ring as the same events added one
// by one would (pages, paging with a since, counters), whatever the ring
// held before, and builds only the events the ring keeps.
func TestAddBatchAsAdds(t *testing.T) {
	for _, size := range []int{1, 4, 10} {
		for _, held := range []int{0, 3, 12} {
			for _, n := range []int{0, 2, 4, 9, 25} {
				name := fmt.Sprintf("size=%d held=%d batch=%d", size, held, n)
				one, batch := NewRing(size, nil), NewRing(size, nil)
				for i := range held {
					old := ev(Ghost, "old", "app", "", "silent")
					old.Time = t0.Add(-time.Duration(held-i) * time.Second)
					one.Add(old)
					batch.Add(old)
				}
				for i := range n {
					one.Add(batchEvent(i))
				}
				var built []int
				batch.AddBatch(n, Suspect, func(i int) (Event, bool) {
					built = append(built, i)
					return batchEvent(i), true
				})
				if want := min(n, size); len(built) != want || want > 0 && built[0] != n-want {
					t.Errorf("%s: built %v, want the last %d", name, built, want)
				}
				for _, q := range []Query{{Forward: true, Limit: MaxLimit}, {Limit: 2}, {SinceSeq: 1}, {SinceSeq: uint64(held + n - 1)}} {
					if diff := cmp.Diff(one.Query(q), batch.Query(q)); diff != "" {
						t.Errorf("%s: query %+v (-one by one +batch):\n%s", name, q, diff)
					}
				}
				if a, b := one.Stats(), batch.Stats(); a != b {
					t.Errorf("%s: stats one by one %+v, batch %+v", name, a, b)
				}
			}
		}
	}
}

// TestAddBatchGone: an event whose build reports false is not recorded.
func TestAddBatchGone(t *testing.T) {
	r := NewRing(10, nil)
	r.AddBatch(3, Suspect, func(i int) (Event, bool) { return batchEvent(i), i != 1 })
	p := r.Query(Query{Forward: true})
	if got := seqs(p); !cmp.Equal(got, []uint64{1, 2}) || p.Events[1].Cookie != 1002 {
		t.Errorf("events %v (cookies %d, %d), want 2 events, the second cookie 1002", got, p.Events[0].Cookie, p.Events[1].Cookie)
	}
	if st := r.Stats(); st.Recorded[0] != 2 {
		t.Errorf("recorded %v, want 2 suspects", st.Recorded)
	}
}

// TestRecorderBatchWithFile: with a file every event of a batch is built
// and written, not only those the ring keeps.
func TestRecorderBatchWithFile(t *testing.T) {
	c := DefaultConfig()
	c.RingSize = 2
	c.File = t.TempDir() + "/events.jsonl"
	r, err := NewRecorder(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	built := 0
	r.EmitBatch(5, Suspect, func(i int) (Event, bool) { built++; return batchEvent(i), true })
	r.Close()
	if built != 5 {
		t.Errorf("built %d events, want all 5", built)
	}
	raw, err := os.ReadFile(c.File)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), "\n"); n != 5 {
		t.Errorf("file holds %d events, want 5", n)
	}
	if p := r.Query(Query{Forward: true}); !cmp.Equal(seqs(p), []uint64{4, 5}) {
		t.Errorf("ring holds %v, want 4, 5", seqs(p))
	}
}
