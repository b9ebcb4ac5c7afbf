package engine

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
)

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
