package engine

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/internal/epoch"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// TestEveryVerdictPacks: every verdict probe knows survives the trip through a
// tracker Tag with the rest of its result, and only ghost verdicts count as
// ghosts once confirmed.
func TestEveryVerdictPacks(t *testing.T) {
	e, _, _, c := newTest()
	reach := true
	for _, v := range probe.Verdicts {
		for _, mode := range []probe.Mode{probe.InWindow, probe.Blind} {
			r := probe.Result{
				Verdict: v, Mode: mode, Sent: 3, Replies: 1, RTT: 1500 * time.Microsecond, HostReachable: &reach, HostHint: probe.HostHintReachable,
				ClosedLocal: true, Guarded: true, Confirmed: true, NAT: probe.NATDNAT + "+" + probe.NATSNAT, Uncertain: probe.UncertainCaptureLost,
				Unprobeable: probe.UnprobeableTCPAO,
			}
			st := packResult(r, e.epoch.Stamp(c.t), e.epoch.Stamp(c.t.Add(-time.Minute)))
			got, ok := unpackVerdict(packVerdict(&st))
			if !ok {
				t.Fatalf("%s/%s: unpacked as never probed", v, mode)
			}
			if diff := cmp.Diff(r, got.result()); diff != "" {
				t.Errorf("%s/%s (-packed +unpacked):\n%s", v, mode, diff)
			}
			ghost, age := e.ghost(tracker.Reasons(0).With(tracker.ReasonIdle), &got, time.Time{}, c.t)
			if ghost != v.Ghost() || (ghost && age != 60) {
				t.Errorf("%s: ghost %v for %v s, want %v", v, ghost, age, v.Ghost())
			}
		}
	}
	if diff := cmp.Diff([]probe.Verdict{probe.Reset, probe.Silent, probe.Unreachable}, probe.GhostVerdicts()); diff != "" {
		t.Errorf("ghost verdicts (-want +got):\n%s", diff)
	}
}

func TestVerdictPacking(t *testing.T) {
	yes, no := true, false
	for _, r := range []probe.Result{
		{Verdict: probe.Alive, Mode: probe.InWindow, Sent: 1, Replies: 1, RTT: 250 * time.Microsecond},
		{Verdict: probe.Silent, Mode: probe.Blind, Sent: 3, HostReachable: &yes, HostHint: probe.HostHintReachable, Confirmed: true},
		{Verdict: probe.Unreachable, Mode: probe.InWindow, Sent: 2, Replies: 1, HostReachable: &no, HostHint: probe.HostHintUnreachable, Confirmed: true},
		{Verdict: probe.Silent, Mode: probe.InWindow, Sent: 3, HostHint: probe.HostHintNAT, NAT: probe.NATDNAT, Confirmed: true},
		{Verdict: probe.Silent, Mode: probe.InWindow, Sent: 3, HostHint: probe.HostHintShared, Confirmed: true},
		{Verdict: probe.Reset, Mode: probe.InWindow, Sent: 1, Replies: 1, ClosedLocal: true, Confirmed: true},
		{Verdict: probe.Reset, Mode: probe.InWindow, Sent: 1, Replies: 1, Guarded: true, Confirmed: true},
		{Verdict: probe.Unprobed, Mode: probe.InWindow, Unprobeable: probe.UnprobeableTCPMD5},
		{Verdict: probe.Unprobed, Mode: probe.Blind, Unprobeable: probe.UnprobeableTCPAO},
		{Verdict: probe.Alive, Mode: probe.InWindow, Sent: 2, Replies: 1, RTT: time.Millisecond, NAT: probe.NATDNAT},
		{Verdict: probe.Reset, Mode: probe.InWindow, Sent: 1, Replies: 1, ClosedLocal: true, Confirmed: true, NAT: probe.NATRedirect + "+" + probe.NATSNAT},
		{Verdict: probe.Silent, Mode: probe.InWindow, Sent: 3, Uncertain: probe.UncertainInterference},
		{Verdict: probe.Unreachable, Mode: probe.InWindow, Sent: 3, Replies: 1, Uncertain: probe.UncertainCaptureLost, NAT: probe.NATDNAT},
		{Verdict: probe.Reset, Mode: probe.Blind, Sent: 1, Replies: 1, Uncertain: probe.UncertainBlind},
		{Verdict: probe.Silent, Mode: probe.InWindow, Sent: 3, Uncertain: probe.UncertainNATUnknown},
		{Verdict: probe.Unreachable, Mode: probe.InWindow, Sent: 3, Replies: 1, Uncertain: probe.UncertainRouting},
	} {
		v := packResult(r, 5, epoch.Zero)
		if diff := cmp.Diff(r, v.result()); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
	if v := packResult(probe.Result{Verdict: probe.Alive, Sent: 1000}, 0, 0); v.sent != 255 {
		t.Errorf("1000 probes packed as %d, want 255", v.sent)
	}
	e := New(&fakeInv{}, nil, nil, Options{})
	now := time.Now()
	if got := e.epoch.Time(e.epoch.Stamp(now)); !got.Equal(now) || e.epoch.Time(e.epoch.Stamp(time.Time{})) != (time.Time{}) {
		t.Errorf("stamps: %v from %v", got, now)
	}
}

func TestVerdictTagRoundTrip(t *testing.T) {
	for _, v := range []verdictState{
		{at: 5, ghostSince: epoch.Zero, rtt: 250 * time.Microsecond, verdict: 1, mode: 1, sent: 1, replies: 1, host: -1, confirmed: true},
		{at: -7, ghostSince: 3, verdict: 3, mode: 2, sent: 3, host: 1, closed: true, confirmed: true},
		{at: 1 << 50, ghostSince: epoch.Zero, verdict: 4, mode: 1, sent: 255, replies: 2, host: 0},
		{at: 9, ghostSince: epoch.Zero, verdict: 0, mode: 2, host: -1, why: 2},
		{at: 9, ghostSince: epoch.Zero, verdict: 1, mode: 1, sent: 1, replies: 1, host: -1, closed: true, nat: uint8(len(packedNATs) - 1)},
		{at: 9, ghostSince: epoch.Zero, verdict: 2, mode: 1, sent: 1, replies: 1, host: -1, guarded: true, confirmed: true, nat: uint8(len(packedNATs) - 1)},
		{at: 9, ghostSince: epoch.Zero, verdict: 3, mode: 1, sent: 3, host: 1, confirmed: false, uncertain: uint8(len(packedUncertain) - 1)},
		{at: 9, ghostSince: 4, verdict: 3, mode: 1, sent: 3, host: -1, confirmed: true, uncertain: 0},
	} {
		got, ok := unpackVerdict(packVerdict(&v))
		if !ok || got != v {
			t.Errorf("round trip of %+v: %+v, %v", v, got, ok)
		}
	}
	if _, ok := unpackVerdict(tracker.Tag{}); ok {
		t.Error("the zero tag unpacked as a verdict")
	}
	bad := packVerdict(&verdictState{why: 2})
	bad[25] = 0xf1 // an unprobeable reason this build does not know
	if _, ok := unpackVerdict(bad); ok {
		t.Error("an unknown unprobeable index unpacked")
	}
}

// TestLateAnswerIsNoGhost: a slow peer answers a probe after the prober
// stopped waiting. The probe came out silent, but the late duplicate ACK
// reached the socket: its tcpi_last_ack_recv, seen at the next scan, is
// newer than the confirmation, and the socket is no ghost (nor a kill
// candidate). A silence confirmed again starts the ghost's age anew, so a
// peer that answered late and then died is a ghost again.
func TestLateAnswerIsNoGhost(t *testing.T) {
	e, inv, _, c := newTest()
	ctx := context.Background()
	s := idleSocket(3, 3, 2*time.Minute) // the fake prober finds port 3 silent
	inv.sockets[7] = []inventory.Socket{s}
	e.Scan(ctx)
	e.Probe(ctx, e.Targets())
	ghosts := func() (listed, summed, cands int) {
		for _, s := range e.Document().Sessions {
			if s.Ghost {
				listed++
			}
		}
		snap, cs := e.Snapshot()
		for _, sum := range snap.Summary {
			for _, n := range sum.Ghosts {
				summed += n
			}
		}
		return listed, summed, len(cs)
	}
	if l, s, k := ghosts(); l != 1 || s != 1 || k != 1 {
		t.Fatalf("before the late answer: %d listed ghosts, %d counted, %d kill candidates; want 1 each", l, s, k)
	}
	c.t = c.t.Add(time.Minute)
	s.Info.LastAckRecv = 55_000 // an ACK 5 s after the probe
	inv.sockets[7] = []inventory.Socket{s}
	e.Scan(ctx)
	if l, s, k := ghosts(); l != 0 || s != 0 || k != 0 {
		t.Errorf("after the late answer: %d listed ghosts, %d counted, %d kill candidates; want none", l, s, k)
	}
	c.t = c.t.Add(time.Second)
	e.Probe(ctx, e.Targets()) // silent again: a ghost since now, until a scan tells
	c.t = c.t.Add(time.Minute)
	s.Info.LastAckRecv = 55_000 // it answered late again
	inv.sockets[7] = []inventory.Socket{s}
	e.Scan(ctx)
	if l, s, k := ghosts(); l != 0 || s != 0 || k != 0 {
		t.Errorf("answered late again: %d listed ghosts, %d counted, %d kill candidates; want none", l, s, k)
	}
	e.Probe(ctx, e.Targets())
	c.t = c.t.Add(time.Minute)
	s.Info.LastAckRecv = 65_000 // no ACK since that probe: the peer died
	inv.sockets[7] = []inventory.Socket{s}
	e.Scan(ctx)
	if l, s, k := ghosts(); l != 1 || s != 1 || k != 1 {
		t.Errorf("died after answering late: %d listed ghosts, %d counted, %d kill candidates; want 1 each", l, s, k)
	}
	if sess := e.Document().Sessions; len(sess) != 1 || sess[0].GhostSeconds != 60 {
		t.Errorf("sessions %+v, want one ghost aged 60 s (since the last confirmation)", sess)
	}
}

// TestAllCountsGhosts: a listing of every socket (Options.All, `ghostd scan
// --all`) counts the ghosts it lists and offers them to the kill policy,
// as a listing of the suspects does.
func TestAllCountsGhosts(t *testing.T) {
	for _, all := range []bool{false, true} {
		e, inv, _, _ := newTest()
		o := e.opts
		o.All = all
		e.SetOptions(o)
		inv.sockets[7] = []inventory.Socket{idleSocket(3, 3, 2*time.Minute), idleSocket(9, 9, 0)} // a silent ghost, a busy socket
		e.Scan(context.Background())
		e.Probe(context.Background(), e.Targets())
		snap, cands := e.Snapshot()
		ghosts := 0
		for _, sum := range snap.Summary {
			for _, n := range sum.Ghosts {
				ghosts += n
			}
		}
		if ghosts != 1 || len(cands) != 1 {
			t.Errorf("all %v: %d ghosts counted, %d kill candidates; want 1 and 1", all, ghosts, len(cands))
		}
	}
}
