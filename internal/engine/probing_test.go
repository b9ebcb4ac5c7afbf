package engine

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
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

// TestPipeline runs one pass through the pipeline as `ghostd scan` does:
// every due suspect is probed chunk by chunk, results reach Observe, the
// kill step sees exactly the confirmed ghosts, what it ends shows as killed
// in the snapshot handed to Publish, and what it declined does not.
func TestPipeline(t *testing.T) {
	e, inv, pr, _ := newTest()
	ctx := context.Background()
	socks := []inventory.Socket{idleSocket(1, 1, 2*time.Minute), idleSocket(2, 2, 2*time.Minute), idleSocket(3, 3, 2*time.Minute)}
	// More suspects than a chunk, all alive, so the pipeline must loop.
	for c := uint64(10); c < 10+ProbeChunk+5; c++ {
		socks = append(socks, idleSocket(c, 1, 2*time.Minute))
	}
	inv.sockets[7] = socks
	var (
		observed  int
		offered   []uint64
		published []*exporter.Snapshot
	)
	pl := NewPipeline(e, PipelineOptions{
		Kill: func(_ context.Context, cands []Candidate) []inventory.Key {
			for _, c := range cands {
				offered = append(offered, c.Socket.Cookie)
			}
			return []inventory.Key{{Netns: 7, Cookie: 2}} // the policy ends the reset one only
		},
		Publish: func(s *exporter.Snapshot) { published = append(published, s) },
		Observe: func(rs []probe.Result) { observed += len(rs) },
	})
	targets := pl.Scan(ctx)
	if len(targets) != len(socks) {
		t.Fatalf("Scan returned %d targets, want %d", len(targets), len(socks))
	}
	pl.Probe(ctx, targets)
	if observed != len(socks) || len(pr.probed) != len(socks) {
		t.Errorf("observed %d results, prober probed %d targets; want %d each", observed, len(pr.probed), len(socks))
	}
	// A chunk that confirmed ghosts publishes at once (kills included).
	if len(published) != 1 {
		t.Fatalf("published %d snapshots while probing, want 1 (the chunk with the ghosts)", len(published))
	}
	if diff := cmp.Diff([]uint64{2, 3}, offered); diff != "" {
		t.Errorf("kill candidates (-want +got):\n%s", diff)
	}
	snap := pl.Publish(ctx)
	if len(published) != 2 || published[1] != snap {
		t.Errorf("Publish handed on %d snapshots, the last not the one returned", len(published))
	}
	// The killed one is no longer a candidate; the declined one still is.
	if diff := cmp.Diff([]uint64{2, 3, 3}, offered); diff != "" {
		t.Errorf("kill candidates after a second publish (-want +got):\n%s", diff)
	}
	killed := map[uint64]bool{}
	e.EachSession(func(b []exporter.Session) bool {
		for _, s := range b {
			killed[s.Cookie] = s.Killed
		}
		return true
	})
	if !killed[2] || killed[3] || killed[1] {
		t.Errorf("killed = %v, want only cookie 2", killed)
	}
	// Probed suspects are not due again: another pass probes nothing.
	pl.Probe(ctx, targets)
	if len(pr.probed) != len(socks) {
		t.Errorf("a second pass over the same batch probed %d more", len(pr.probed)-len(socks))
	}
}

// TestPipelineNoProber: with probing off the pipeline offers no targets and
// a probe step does nothing, but still publishes.
func TestPipelineNoProber(t *testing.T) {
	_, inv, _, c := newTest()
	inv.sockets[7] = []inventory.Socket{idleSocket(1, 1, 2*time.Minute)}
	e := New(inv, nil, nil, Options{Now: c.now})
	n := 0
	pl := NewPipeline(e, PipelineOptions{Publish: func(*exporter.Snapshot) { n++ }})
	ctx := context.Background()
	if ts := pl.Scan(ctx); ts != nil {
		t.Errorf("targets without a prober: %d", len(ts))
	}
	if rest := pl.ProbeChunk(ctx, []probe.Target{{NetnsInode: 7, Cookie: 1}}); rest != nil {
		t.Errorf("ProbeChunk without a prober left %d", len(rest))
	}
	if snap := pl.Publish(ctx); n != 1 || snap.ProbeMode != "off" || snap.Summary[0].Sessions != 1 {
		t.Errorf("published %d, mode %q, summary %+v", n, snap.ProbeMode, snap.Summary)
	}
}

// TestTargetsPriority: never-probed suspects first, then ghosts to
// re-confirm, then alive suspects past their backoff, longest-waiting first;
// and every target says since when it has been quiet.
func TestTargetsPriority(t *testing.T) {
	e, inv, pr, c := newTest()
	ctx := context.Background()
	pr.verdicts[4] = probe.Alive
	inv.sockets[7] = []inventory.Socket{
		idleSocket(1, 1, 2*time.Minute), // alive, probed first
		idleSocket(2, 2, 2*time.Minute), // reset: a ghost
		idleSocket(4, 4, 2*time.Minute), // alive, probed a minute later
	}
	e.Scan(ctx)
	e.Probe(ctx, e.Targets()[:1]) // 1 only
	c.t = c.t.Add(time.Minute)
	e.Scan(ctx)
	e.Probe(ctx, e.Targets()) // 2 and 4
	// A new suspect appears with the higher cookie 9.
	inv.sockets[7] = append(inv.sockets[7], idleSocket(9, 1, 2*time.Minute))
	c.t = c.t.Add(10 * time.Minute)
	e.Scan(ctx)
	ts := e.Targets()
	// The ghost to re-confirm first, then the new suspect, then the alive
	// ones, longest-waiting first.
	if diff := cmp.Diff([]uint64{2, 9, 1, 4}, cookies(ts)); diff != "" {
		t.Errorf("target order (-want +got):\n%s", diff)
	}
	for _, tg := range ts {
		if want := c.t.Add(-2 * time.Minute); !tg.QuietSince.Equal(want) {
			t.Errorf("cookie %d: QuietSince %v, want %v (scan time minus idle)", tg.Cookie, tg.QuietSince, want)
		}
	}
}

func TestTargetsBounded(t *testing.T) {
	inv := &fakeInv{ns: []inventory.Namespace{{Inode: 7, Name: "srv"}}, sockets: map[uint64][]inventory.Socket{}}
	// More than twice the bound, the oldest sockets last: the selection
	// must keep the best through its compactions.
	for i := 2*MaxTargets + 1000; i > 0; i-- {
		inv.sockets[7] = append(inv.sockets[7], idleSocket(uint64(i), 1, 2*time.Minute))
	}
	e := New(inv, &fakeProber{}, nil, Options{Tracker: tracker.Config{Idle: time.Minute}})
	e.Scan(context.Background())
	ts := e.Targets()
	if len(ts) != MaxTargets || ts[0].Cookie != 1 || ts[len(ts)-1].Cookie != MaxTargets {
		t.Errorf("%d targets from cookie %d to %d; want the %d oldest", len(ts), ts[0].Cookie, ts[len(ts)-1].Cookie, MaxTargets)
	}
}

// TestDueHead: the head of a batch is checked a chunk at a time; targets no
// longer due are dropped from it, the unchecked tail is kept.
func TestDueHead(t *testing.T) {
	e, inv, _, _ := newTest()
	for i := range 10 {
		inv.sockets[7] = append(inv.sockets[7], idleSocket(uint64(i+1), 1, 2*time.Minute))
	}
	e.Scan(context.Background())
	batch := e.Targets()
	e.Probe(context.Background(), []probe.Target{batch[1], batch[2], batch[4]}) // no longer due
	rest, n := e.DueHead(batch, 3)
	if n != 3 || !cmp.Equal(cookies(rest[:n]), []uint64{1, 4, 6}) {
		t.Errorf("due head %v (n=%d), want [1 4 6]", cookies(rest[:n]), n)
	}
	if !cmp.Equal(cookies(rest[n:]), []uint64{7, 8, 9, 10}) {
		t.Errorf("tail %v, want [7 8 9 10] unchecked", cookies(rest[n:]))
	}
	if rest, n = e.DueHead(rest[n:n], 3); n != 0 || len(rest) != 0 {
		t.Errorf("empty batch: %d due of %d", n, len(rest))
	}
}
