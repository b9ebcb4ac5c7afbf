package engine

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
			ghost, age := e.ghost(tracker.Reasons(0).With(tracker.ReasonIdle), &got, c.t)
			if ghost != v.Ghost() || (ghost && age != 60) {
				t.Errorf("%s: ghost %v for %v s, want %v", v, ghost, age, v.Ghost())
			}
		}
	}
	if diff := cmp.Diff([]probe.Verdict{probe.Reset, probe.Silent, probe.Unreachable}, probe.GhostVerdicts()); diff != "" {
		t.Errorf("ghost verdicts (-want +got):\n%s", diff)
	}
}
