package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
)

// sink collects events.
type sink struct{ evs []events.Event }

func (s *sink) Emit(ev events.Event) { s.evs = append(s.evs, ev) }

// take returns "kind cookie" for the events since the last take.
func (s *sink) take() []string {
	out := []string{}
	for _, ev := range s.evs {
		x := fmt.Sprintf("%s %d", ev.Kind, ev.Cookie)
		if ev.Result != "" {
			x += " " + ev.Result
		}
		out = append(out, x)
	}
	s.evs = nil
	return out
}

func TestEngineEvents(t *testing.T) {
	e, inv, pr, c := newTest()
	var got sink
	e.SetEvents(&got)
	ctx := context.Background()
	step := func(what string, want ...string) {
		t.Helper()
		if want == nil {
			want = []string{}
		}
		if diff := cmp.Diff(want, got.take()); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", what, diff)
		}
	}
	pl := NewPipeline(e, PipelineOptions{})
	pass := func() {
		c.t = c.t.Add(15 * time.Second)
		pl.Probe(ctx, pl.Scan(ctx))
	}
	inv.sockets[7] = []inventory.Socket{
		idleSocket(1, 1, 2*time.Minute), // alive
		idleSocket(2, 2, 2*time.Minute), // reset
		idleSocket(3, 3, 2*time.Minute), // silent
		idleSocket(4, 4, 10*time.Second),
	}
	c.t = c.t.Add(time.Second)
	targets := pl.Scan(ctx)
	step("first scan", "suspect 1", "suspect 2", "suspect 3")
	pl.Probe(ctx, targets)
	step("first probes: a first alive is no event", "ghost 2", "ghost 3")

	// The suspect event carries identity, owner and evidence.
	c.t = c.t.Add(15 * time.Second)
	inv.sockets[7] = append(inv.sockets[7], idleSocket(5, 3, 3*time.Minute))
	targets = pl.Scan(ctx)
	if len(got.evs) != 1 {
		t.Fatalf("second scan: %+v", got.evs)
	}
	want := events.Event{
		Time: c.t, Kind: events.Suspect, Netns: "srv", NetnsInode: 7, Family: "inet",
		Local: "198.51.100.2:5432", Remote: "192.0.2.2:3", State: "ESTABLISHED", Cookie: 5, Inode: 5,
		PID: 5, Comm: "app", Unit: "app.service", Reasons: []string{"idle"}, Verdict: "unprobed", IdleSeconds: 180,
	}
	if diff := cmp.Diff(want, got.evs[0]); diff != "" {
		t.Errorf("suspect event (-want +got):\n%s", diff)
	}
	got.take()
	pl.Probe(ctx, targets)
	step("ghost", "ghost 5")

	// Re-confirmed ghosts are no news; a ghost that answers is.
	pr.verdicts[3] = probe.Alive
	c.t = c.t.Add(2 * time.Minute)
	pass()
	step("ghosts 3 and 5 answer", "alive 3", "alive 5")
	pass()
	step("nothing changed")

	// Kill outcomes.
	s2 := inventory.Key{Netns: 7, Cookie: 2}
	e.NoteKill(s2, "reset", "destroy", nil, "kill disabled")
	e.NoteKill(s2, "reset", "destroy", nil, "younger than min age (1m0s < 5m0s)")
	e.NoteKill(s2, "reset", "destroy", nil, "younger than min age (1m15s < 5m0s)")
	e.NoteKill(s2, "reset", "destroy", nil, "rate limited")
	e.NoteKill(s2, "reset", "destroy", errors.New("no such file or directory"), "")
	e.NoteKill(s2, "reset", "destroy", nil, "")
	step("kills", "killed 2 refused", "killed 2 refused", "killed 2 error", "killed 2 ok")
	e.NoteKill(inventory.Key{Netns: 7, Cookie: 99}, "reset", "destroy", nil, "")
	step("a socket the engine never tracked")

	// Gone: after the second complete dump that misses it, not before.
	inv.sockets[7] = inv.sockets[7][2:] // 1 and 2 close
	pass()
	step("one miss")
	pass()
	step("two misses", "gone 1", "gone 2")

	// A socket a dump skips once is not gone.
	keep := inv.sockets[7]
	inv.sockets[7] = []inventory.Socket{keep[0], keep[1]} // 3, 4: 5 skipped once
	pass()
	inv.sockets[7] = keep
	pass()
	pass()
	step("skipped once")

	// A namespace that disappears takes its suspects with it.
	inv.ns = nil
	pass()
	step("namespace gone", "gone 3", "gone 5")
}

// TestEngineEventsOrder: a socket's suspect event comes before its ghost
// event even when the owners were not looked up in between (the probe
// loop may record a verdict before the scan loop publishes).
func TestEngineEventsOrder(t *testing.T) {
	e, inv, _, c := newTest()
	var got sink
	e.SetEvents(&got)
	ctx := context.Background()
	inv.sockets[7] = []inventory.Socket{idleSocket(2, 2, 2*time.Minute)}
	c.t = c.t.Add(time.Second)
	e.Scan(ctx)
	if len(got.evs) != 0 {
		t.Fatalf("suspect events before their owners were looked up: %+v", got.evs)
	}
	e.Probe(ctx, e.Targets())
	if diff := cmp.Diff([]string{"suspect 2", "ghost 2"}, got.take()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	e.Snapshot()
	if evs := got.take(); len(evs) != 0 {
		t.Errorf("the snapshot recorded them again: %v", evs)
	}
}

// TestPodOwnsItsGhosts: in a namespace the container runtime named, the
// ghosts' owner (the per-owner metric and groups) and their events' pod are
// the pod, not the process inside it.
func TestPodOwnsItsGhosts(t *testing.T) {
	e, inv, _, c := newTest()
	inv.ns[0].PodNamespace, inv.ns[0].PodName = "shop", "cart-7d9f"
	var got sink
	e.SetEvents(&got)
	ctx := context.Background()
	inv.sockets[7] = []inventory.Socket{idleSocket(3, 3, 2*time.Minute)} // silent
	c.t = c.t.Add(time.Second)
	e.Scan(ctx)
	e.Probe(ctx, e.Targets())
	snap, _ := e.Snapshot()
	if diff := cmp.Diff(map[string]int{"shop/cart-7d9f": 1}, snap.GhostsByOwner); diff != "" {
		t.Errorf("ghosts by owner (-want +got):\n%s", diff)
	}
	if len(got.evs) != 2 {
		t.Fatalf("events: %+v", got.evs)
	}
	for _, ev := range got.evs {
		if ev.Pod != "shop/cart-7d9f" || ev.Owner() != "shop/cart-7d9f" {
			t.Errorf("%s event: pod %q owner %q, want shop/cart-7d9f", ev.Kind, ev.Pod, ev.Owner())
		}
	}
}

// TestFirstScanEventsBatched: a first scan with more new suspects than the
// ring holds records, through the recorder's batch, the events one Emit
// each would have: the ring keeps the last ones, numbered after all of them.
func TestFirstScanEventsBatched(t *testing.T) {
	const n, size = 25, 10
	ctx := context.Background()
	var plain sink
	e1, inv1, _, _ := newTest()
	inv1.sockets[7] = idleSockets(n)
	e1.SetEvents(&plain)
	NewPipeline(e1, PipelineOptions{}).Scan(ctx)

	cfg := events.DefaultConfig()
	cfg.RingSize = size
	rec, err := events.NewRecorder(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e2, inv2, _, _ := newTest()
	inv2.sockets[7] = idleSockets(n)
	e2.SetEvents(rec)
	NewPipeline(e2, PipelineOptions{}).Scan(ctx)

	if len(plain.evs) != n {
		t.Fatalf("%d suspect events one by one, want %d", len(plain.evs), n)
	}
	want := plain.evs[n-size:]
	for i := range want {
		want[i].Seq = uint64(n - size + i + 1)
	}
	got := rec.Query(events.Query{Forward: true, Limit: events.MaxLimit})
	if diff := cmp.Diff(want, got.Events); diff != "" {
		t.Errorf("ring (-one by one +batch):\n%s", diff)
	}
	if st := rec.Stats(); st.Recorded[0] != n || st.Evicted != n-size || got.Latest != n {
		t.Errorf("stats %+v, latest %d; want %d suspects recorded, %d evicted", st, got.Latest, n, n-size)
	}
}
