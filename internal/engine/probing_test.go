package engine

import (
	"context"
	"testing"
	"time"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
	"github.com/google/go-cmp/cmp"
)

// chunkProber records the size of every ProbeAll call.
type chunkProber struct {
	fakeProber
	sizes []int
}

func (c *chunkProber) ProbeAll(ctx context.Context, ts []probe.Target) []probe.Result {
	c.sizes = append(c.sizes, len(ts))
	return c.fakeProber.ProbeAll(ctx, ts)
}

func TestEngineProbesInChunks(t *testing.T) {
	inv := &fakeInv{ns: []inventory.Namespace{{Inode: 7, Name: "srv"}}, sockets: map[uint64][]inventory.Socket{}}
	pr := &chunkProber{fakeProber: fakeProber{verdicts: map[uint16]probe.Verdict{}}}
	n := 2*ProbeChunk + 3
	for i := 0; i < n; i++ {
		inv.sockets[7] = append(inv.sockets[7], idleSocket(uint64(i+1), uint16(i+1), 2*time.Minute))
		pr.verdicts[uint16(i+1)] = probe.Alive
	}
	e := New(inv, pr, nil, Options{Tracker: tracker.Config{Idle: time.Minute}, Backoff: time.Hour})
	e.Scan(context.Background())
	res := e.Probe(context.Background(), e.Targets())
	if len(res) != n || !cmp.Equal(pr.sizes, []int{ProbeChunk, ProbeChunk, 3}) {
		t.Errorf("%d results, chunks %v; want %d results in chunks of %d", len(res), pr.sizes, n, ProbeChunk)
	}
	if got := len(e.Targets()); got != 0 {
		t.Errorf("%d targets still due after every chunk was recorded", got)
	}
}

// aheadProber caches what ReadAhead read, as probe.Prober does.
type aheadProber struct {
	fakeProber
	cached  map[uint64]bool
	windows []int
}

func (a *aheadProber) Missing(ts []probe.Target) int {
	n := 0
	for _, t := range ts {
		if !a.cached[t.Cookie] {
			n++
		}
	}
	return n
}

func (a *aheadProber) ReadAhead(_ context.Context, ts []probe.Target) int {
	a.windows = append(a.windows, len(ts))
	for _, t := range ts {
		a.cached[t.Cookie] = true
	}
	return len(ts)
}

// TestEngineReadsAheadOnce: one read-ahead serves every chunk of a batch.
func TestEngineReadsAheadOnce(t *testing.T) {
	inv := &fakeInv{ns: []inventory.Namespace{{Inode: 7, Name: "srv"}}, sockets: map[uint64][]inventory.Socket{}}
	pr := &aheadProber{fakeProber: fakeProber{verdicts: map[uint16]probe.Verdict{}}, cached: map[uint64]bool{}}
	n := 3*ProbeChunk + 1
	for i := range n {
		inv.sockets[7] = append(inv.sockets[7], idleSocket(uint64(i+1), 1, 2*time.Minute))
	}
	pr.verdicts[1] = probe.Alive
	e := New(inv, pr, nil, Options{Tracker: tracker.Config{Idle: time.Minute}, Backoff: time.Hour})
	e.Scan(context.Background())
	if res := e.Probe(context.Background(), e.Targets()); len(res) != n {
		t.Fatalf("%d results, want %d", len(res), n)
	}
	if !cmp.Equal(pr.windows, []int{n}) {
		t.Errorf("read-ahead windows %v, want one of %d", pr.windows, n)
	}
}

// Reprobe probes the asked suspects now, records the answers (an alive
// answer clears a ghost) and refuses keys that are no longer suspects.
func TestReprobe(t *testing.T) {
	e, inv, pr, c := newTest()
	ctx := context.Background()
	inv.sockets[7] = []inventory.Socket{idleSocket(2, 2, 2*time.Minute), idleSocket(3, 3, 2*time.Minute)}
	e.Scan(ctx)
	e.Probe(ctx, e.Targets())
	c.t = c.t.Add(time.Second)
	pr.verdicts[3] = probe.Alive // the silent peer answers now
	pr.probed = nil
	keys := []inventory.Key{{Netns: 7, Cookie: 2}, {Netns: 7, Cookie: 3}, {Netns: 7, Cookie: 99}}
	res := e.Reprobe(ctx, keys)
	got := []string{string(res[0].Verdict), string(res[1].Verdict), string(res[2].Verdict)}
	if diff := cmp.Diff([]string{"reset", "alive", "unprobed"}, got); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
	if res[2].Err == nil || len(pr.probed) != 2 {
		t.Errorf("unknown key: err %v; probed %d targets, want 2", res[2].Err, len(pr.probed))
	}
	ghosts := map[uint64]bool{}
	for _, s := range e.Document().Sessions {
		ghosts[s.Cookie] = s.Ghost
	}
	if diff := cmp.Diff(map[uint64]bool{2: true, 3: false}, ghosts); diff != "" {
		t.Errorf("ghosts after the re-probe (-want +got):\n%s", diff)
	}
}
