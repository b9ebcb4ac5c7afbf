package kill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// fakeOps is a scripted kernel: Lookup answers from cur, Destroy records.
type fakeOps struct {
	cur        map[uint64]inventory.Socket // by cookie; missing = gone
	lookupErr  error
	destroyErr error
	destroyed  []uint64
}

func (f *fakeOps) Lookup(s *inventory.Socket) (inventory.Socket, bool, error) {
	if f.lookupErr != nil {
		return inventory.Socket{}, false, f.lookupErr
	}
	c, ok := f.cur[s.Cookie]
	return c, ok, nil
}

func (f *fakeOps) Destroy(s *inventory.Socket) error {
	f.destroyed = append(f.destroyed, s.Cookie)
	return f.destroyErr
}

// fakeFDs records borrowed-fd actions.
type fakeFDs struct {
	calls []string
	err   error
}

func (f *fakeFDs) keepalive(pid int, inode uint32, _ uint64, p *Policy) error {
	f.calls = append(f.calls, fmt.Sprintf("keepalive pid=%d inode=%d idle=%s", pid, inode, p.Keepalive.Idle))
	return f.err
}

func (f *fakeFDs) shutdownWrite(pid int, inode uint32, _ uint64) error {
	f.calls = append(f.calls, fmt.Sprintf("shutdown pid=%d inode=%d", pid, inode))
	return f.err
}

func opsWith(cands ...Candidate) *fakeOps {
	f := &fakeOps{cur: map[uint64]inventory.Socket{}}
	for _, c := range cands {
		f.cur[c.Socket.Cookie] = c.Socket
	}
	return f
}

// fakeReporter records what the killer reports, as the exporter's Store
// would count it.
type fakeReporter struct {
	kills     []string // "netns verdict ok" or "netns verdict error: ..."
	supported []bool
}

func (f *fakeReporter) ObserveKill(netns, verdict string, err error) {
	r := "ok"
	if err != nil {
		r = "error: " + err.Error()
	}
	f.kills = append(f.kills, netns+" "+verdict+" "+r)
}

func (f *fakeReporter) SetKillSupported(ok bool) { f.supported = append(f.supported, ok) }

// errDestroy is what a failing SOCK_DESTROY returns.
var errDestroy = errors.New("inventory: destroy: no such socket")

func skips(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Skipped
		if r.Skipped == "" {
			out[i] = "acted"
			if r.Err != nil {
				out[i] = "error: " + r.Err.Error()
			}
		}
	}
	return out
}

func TestApplyRecheck(t *testing.T) {
	gone, changed, healthy, moved, ok := ghostCandidate(1), ghostCandidate(2), ghostCandidate(3), ghostCandidate(4), ghostCandidate(5)
	ops := opsWith(changed, healthy, moved, ok)
	s := ops.cur[2]
	s.Cookie = 99 // same 4-tuple, a newer connection
	ops.cur[2] = s
	s = ops.cur[3]
	s.Info.SetOptional(1000, 2001, 0, 0) // one more byte received
	ops.cur[3] = s
	s = ops.cur[4]
	s.State = inventory.StateFinWait1
	ops.cur[4] = s
	denied := ghostCandidate(6)
	denied.Verdict = probe.Alive

	rep := &fakeReporter{}
	k := newConfirmingKiller(enabled(), ops, rep, nil, (&fakeClock{t0}).now)
	recs := k.Apply(context.Background(), []Candidate{gone, changed, healthy, moved, ok, denied})
	want := []string{"gone", "cookie changed", "now healthy: bytes moved since the scan", "state changed to FIN_WAIT1", "acted", "alive: never killed"}
	if diff := cmp.Diff(want, skips(recs)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint64{5}, ops.destroyed); diff != "" {
		t.Errorf("destroyed (-want +got):\n%s", diff)
	}
	for _, r := range recs {
		if r.Mode != ModeDestroy {
			t.Errorf("record mode %q", r.Mode)
		}
	}
	if diff := cmp.Diff([]string{"host silent ok"}, rep.kills); diff != "" {
		t.Errorf("reported kills (-want +got):\n%s", diff)
	}
	ops.lookupErr = errors.New("netlink down")
	recs = k.Apply(context.Background(), []Candidate{ghostCandidate(7)})
	if diff := cmp.Diff([]string{"re-check failed: netlink down"}, skips(recs)); diff != "" {
		t.Errorf("lookup error (-want +got):\n%s", diff)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if diff := cmp.Diff([]string{"canceled"}, skips(k.Apply(ctx, []Candidate{ghostCandidate(5)}))); diff != "" {
		t.Errorf("canceled (-want +got):\n%s", diff)
	}
}

func TestApplyRateLimit(t *testing.T) {
	clk := &fakeClock{t0}
	p := enabled()
	p.PerMinute = 3
	cands := ghostCandidates(5)
	ops := opsWith(cands...)
	k := newConfirmingKiller(p, ops, nil, nil, clk.now)
	got := skips(k.Apply(context.Background(), cands))
	want := []string{"acted", "acted", "acted", "rate limited", "rate limited"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("burst (-want +got):\n%s", diff)
	}
	// 3 per minute refills one token every 20 s.
	clk.advance(19 * time.Second)
	if diff := cmp.Diff([]string{"rate limited"}, skips(k.Apply(context.Background(), cands[3:4]))); diff != "" {
		t.Errorf("after 19s (-want +got):\n%s", diff)
	}
	clk.advance(time.Second)
	if diff := cmp.Diff([]string{"acted", "rate limited"}, skips(k.Apply(context.Background(), cands[3:5]))); diff != "" {
		t.Errorf("after 20s (-want +got):\n%s", diff)
	}
	clk.advance(time.Hour)
	if diff := cmp.Diff([]string{"acted"}, skips(k.Apply(context.Background(), cands[4:5]))); diff != "" {
		t.Errorf("after an hour (-want +got):\n%s", diff)
	}
	if len(ops.destroyed) != 5 {
		t.Errorf("destroyed %v, want 5", ops.destroyed)
	}
}

func TestApplyModes(t *testing.T) {
	p := enabled()
	p.Mode = ModeKeepalive
	p.CloseWait = true
	ghost, leak := ghostCandidate(1), closeWaitCandidate(2)
	noPID := ghostCandidate(3)
	noPID.PID = 0
	ops := opsWith(ghost, leak, noPID)
	fds := &fakeFDs{}
	rep := &fakeReporter{}
	k := newConfirmingKiller(p, ops, rep, nil, (&fakeClock{t0}).now)
	k.fds = fds
	recs := k.Apply(context.Background(), []Candidate{ghost, leak, noPID})
	if diff := cmp.Diff([]string{"acted", "acted", "owner unknown: keepalive and shutdown need the owner's pid and the socket inode"}, skips(recs)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if recs[0].Mode != ModeKeepalive || recs[1].Mode != ModeShutdown {
		t.Errorf("modes %q %q, want keepalive shutdown", recs[0].Mode, recs[1].Mode)
	}
	if diff := cmp.Diff([]string{"keepalive pid=4242 inode=1001 idle=10s", "shutdown pid=4242 inode=1002"}, fds.calls); diff != "" {
		t.Errorf("fd actions (-want +got):\n%s", diff)
	}
	if len(ops.destroyed) != 0 {
		t.Errorf("destroyed %v in keepalive mode", ops.destroyed)
	}
	if diff := cmp.Diff([]string{"host silent ok", "host close_wait ok"}, rep.kills); diff != "" {
		t.Errorf("reported kills (-want +got):\n%s", diff)
	}
}

func TestApplyDestroyUnsupported(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	a, b := ghostCandidate(1), ghostCandidate(2)
	ops := opsWith(a, b)
	ops.destroyErr = fmt.Errorf("inventory: destroy: %w", inventory.ErrDestroyUnsupported)
	rep := &fakeReporter{}
	k := newConfirmingKiller(enabled(), ops, rep, log, (&fakeClock{t0}).now)
	recs := k.Apply(context.Background(), []Candidate{a, b})
	if recs[0].Err == nil || recs[1].Skipped != "destroy unsupported by this kernel" {
		t.Errorf("records %+v", recs)
	}
	recs = k.Apply(context.Background(), []Candidate{a})
	if recs[0].Skipped != "destroy unsupported by this kernel" || len(ops.destroyed) != 1 {
		t.Errorf("destroy tried again: %+v, destroyed %v", recs, ops.destroyed)
	}
	if n := strings.Count(buf.String(), "SOCK_DESTROY is not supported"); n != 1 {
		t.Errorf("said it %d times, want once:\n%s", n, buf.String())
	}
	if diff := cmp.Diff([]bool{false}, rep.supported); diff != "" {
		t.Errorf("reported kill support (-want +got):\n%s", diff)
	}
}

func TestAuditLine(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := ghostCandidate(1)
	failing := ghostCandidate(2)
	ops := opsWith(c, failing)
	rep := &fakeReporter{}
	k := newConfirmingKiller(enabled(), ops, rep, log, (&fakeClock{t0}).now)
	k.Apply(context.Background(), []Candidate{c})
	ops.destroyErr = errDestroy
	k.Apply(context.Background(), []Candidate{failing})

	var audits []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if m["audit"] == true {
			delete(m, "time")
			audits = append(audits, m)
		}
	}
	base := map[string]any{
		"level": "INFO", "msg": "kill", "audit": true,
		"netns": "host", "netns_inode": 4026531840.0,
		"local": "192.0.2.1:5432", "remote": "198.51.100.7:40000", "cookie": 1.0, "state": "ESTABLISHED",
		"pid": 4242.0, "comm": "postgres", "unit": "postgresql.service", "pod": "", "container": "",
		"verdict": "silent", "reasons": "idle", "probes_sent": 3.0, "replies": 0.0,
		"idle_seconds": 412.5, "ghost_seconds": 600.0, "mode": "destroy", "result": "ok", "error": "",
	}
	second := map[string]any{}
	for k, v := range base {
		second[k] = v
	}
	second["cookie"], second["level"], second["result"] = 2.0, "WARN", "error"
	second["error"] = errDestroy.Error()
	if diff := cmp.Diff([]map[string]any{base, second}, audits); diff != "" {
		t.Errorf("audit lines (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"host silent ok", "host silent error: " + errDestroy.Error()}, rep.kills); diff != "" {
		t.Errorf("reported kills (-want +got):\n%s", diff)
	}
}

func TestApplyWithoutOps(t *testing.T) {
	k := newConfirmingKiller(enabled(), nil, nil, nil, (&fakeClock{t0}).now)
	if diff := cmp.Diff([]string{"no socket access"}, skips(k.Apply(context.Background(), []Candidate{ghostCandidate(1)}))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// A kill needs a fresh confirmation: the ghost is probed again right before
// it is killed, and only a confirmed ghost verdict lets the kill go on. An
// alive answer costs no rate token.
func TestApplyNeedsFreshConfirmation(t *testing.T) {
	p := enabled()
	p.PerMinute = 1
	c := ghostCandidate(1)
	ops := opsWith(c)
	k := New(p, ops, nil, nil, (&fakeClock{t0}).now)
	if diff := cmp.Diff([]string{"no fresh confirmation: probing is off"}, skips(k.Apply(context.Background(), []Candidate{c}))); diff != "" {
		t.Errorf("without a reprober (-want +got):\n%s", diff)
	}
	var asked []inventory.Key
	answer := probe.Result{Verdict: probe.Alive, Replies: 1, Sent: 1}
	k.SetReprober(func(_ context.Context, keys []inventory.Key) []probe.Result {
		asked = append(asked, keys...)
		out := make([]probe.Result, len(keys))
		for i := range out {
			out[i] = answer
		}
		return out
	})
	if diff := cmp.Diff([]string{"re-probe before the kill: alive"}, skips(k.Apply(context.Background(), []Candidate{c}))); diff != "" {
		t.Errorf("re-probe alive (-want +got):\n%s", diff)
	}
	answer = probe.Result{Verdict: probe.Silent, Sent: 3} // silent but not confirmed (blind)
	if diff := cmp.Diff([]string{"re-probe before the kill: silent"}, skips(k.Apply(context.Background(), []Candidate{c}))); diff != "" {
		t.Errorf("re-probe unconfirmed (-want +got):\n%s", diff)
	}
	answer = probe.Result{Verdict: probe.Reset, Confirmed: true, Sent: 1, Replies: 1}
	recs := k.Apply(context.Background(), []Candidate{c})
	if diff := cmp.Diff([]string{"acted"}, skips(recs)); diff != "" {
		t.Errorf("re-probe confirmed (-want +got):\n%s", diff)
	}
	if len(ops.destroyed) != 1 || len(asked) != 3 || asked[0] != c.Socket.Key() {
		t.Errorf("destroyed %v, re-probed %v; want one kill after three re-probes of cookie 1", ops.destroyed, asked)
	}
}

// A failed kill costs no rate token and backs off for that socket, so the
// same failing socket cannot starve the others.
func TestApplyFailedKillBacksOff(t *testing.T) {
	clk := &fakeClock{t0}
	p := enabled()
	p.PerMinute = 1
	bad, good := ghostCandidate(1), ghostCandidate(2)
	ops := &failingOps{fakeOps: opsWith(bad, good), fail: map[uint64]bool{1: true}}
	k := newConfirmingKiller(p, ops, nil, nil, clk.now)
	if diff := cmp.Diff([]string{"error: EBUSY"}, skips(k.Apply(context.Background(), []Candidate{bad}))); diff != "" {
		t.Errorf("first try (-want +got):\n%s", diff)
	}
	got := skips(k.Apply(context.Background(), []Candidate{bad, good}))
	if diff := cmp.Diff([]string{"backing off after 1 failed kills (next try in 1m0s)", "acted"}, got); diff != "" {
		t.Errorf("right after (-want +got):\n%s", diff)
	}
	clk.advance(time.Minute)
	if diff := cmp.Diff([]string{"error: EBUSY"}, skips(k.Apply(context.Background(), []Candidate{bad}))); diff != "" {
		t.Errorf("after a minute (-want +got):\n%s", diff)
	}
	clk.advance(time.Minute)
	if diff := cmp.Diff([]string{"backing off after 2 failed kills (next try in 1m0s)"}, skips(k.Apply(context.Background(), []Candidate{bad}))); diff != "" {
		t.Errorf("the backoff doubles (-want +got):\n%s", diff)
	}
}

// failingOps fails SOCK_DESTROY for some cookies.
type failingOps struct {
	*fakeOps
	fail map[uint64]bool
}

func (f *failingOps) Destroy(s *inventory.Socket) error {
	f.destroyed = append(f.destroyed, s.Cookie)
	if f.fail[s.Cookie] {
		return errors.New("EBUSY")
	}
	return nil
}

// A reload (SetPolicy) must not refill the kill rate limiter.
func TestSetPolicyKeepsRateTokens(t *testing.T) {
	clk := &fakeClock{t0}
	p := enabled()
	p.PerMinute = 2
	cands := ghostCandidates(3)
	k := newConfirmingKiller(p, opsWith(cands...), nil, nil, clk.now)
	if diff := cmp.Diff([]string{"acted", "acted"}, skips(k.Apply(context.Background(), cands[:2]))); diff != "" {
		t.Fatalf("burst (-want +got):\n%s", diff)
	}
	k.SetPolicy(p)
	if diff := cmp.Diff([]string{"rate limited"}, skips(k.Apply(context.Background(), cands[2:]))); diff != "" {
		t.Errorf("after a reload (-want +got):\n%s", diff)
	}
	if got := k.Policy(); got.PerMinute != 2 {
		t.Errorf("policy after reload: %+v", got)
	}
}

// A CLOSE_WAIT socket whose peer keeps its window shut (zero_window) is not
// a leak: its owner still has data queued for the peer, so the re-check
// refuses to shut it down.
func TestApplySparesStalledCloseWait(t *testing.T) {
	p := enabled()
	p.CloseWait = true
	c := closeWaitCandidate(1)
	c.Reasons = c.Reasons.With(tracker.ReasonZeroWindow)
	ops := opsWith(c)
	s := ops.cur[1]
	s.WQueue = 4096
	ops.cur[1] = s
	fds := &fakeFDs{}
	k := New(p, ops, nil, nil, (&fakeClock{t0}).now)
	k.fds = fds
	if diff := cmp.Diff([]string{"CLOSE_WAIT socket still sending"}, skips(k.Apply(context.Background(), []Candidate{c}))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if len(fds.calls) != 0 {
		t.Errorf("fd actions %v, want none", fds.calls)
	}
}

// A ghost is killed only if its socket took no ACK since it was first
// confirmed (a slow peer's late answer reaches the socket, not the prober)
// and, looked up again after the re-probe, still moved nothing and took no
// ACK meanwhile.
func TestApplyRefusesLiveActivity(t *testing.T) {
	tests := []struct {
		name           string
		before, during func(*inventory.Socket) // the socket at the first re-check, and what the re-probe's seconds change
		want           string
	}{
		{"quiet", nil, nil, "acted"},
		{"late answer", func(s *inventory.Socket) { s.Info.LastAckRecv = 30_000 }, nil,
			"an ACK arrived 30s ago, after it was confirmed a ghost 10m0s ago: the peer answers late"},
		{"no tcp_info", func(s *inventory.Socket) { s.Info = inventory.TCPInfo{} }, nil, "activity unknown (no tcp_info)"},
		{"ACK during the re-probe", nil, func(s *inventory.Socket) { s.Info.LastAckRecv = 1500 },
			"an ACK arrived 2s ago, after it was confirmed a ghost 10m3s ago: the peer answers late"},
		{"bytes during the re-probe", nil, func(s *inventory.Socket) { s.Info.SetOptional(1000, 2001, 0, 0) },
			"now healthy: bytes moved since the scan"},
		{"new connection during the re-probe", nil, func(s *inventory.Socket) { s.Cookie = 99 }, "cookie changed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t0}
			c := ghostCandidate(1)
			ops := opsWith(c)
			s := ops.cur[1]
			if tc.before != nil {
				tc.before(&s)
			}
			ops.cur[1] = s
			k := New(enabled(), ops, nil, nil, clk.now)
			k.SetReprober(func(ctx context.Context, keys []inventory.Key) []probe.Result {
				clk.advance(3 * time.Second)
				if tc.during != nil {
					s := ops.cur[1]
					tc.during(&s)
					ops.cur[1] = s
				}
				return reprobeAs(probe.Silent)(ctx, keys)
			})
			if diff := cmp.Diff([]string{tc.want}, skips(k.Apply(context.Background(), []Candidate{c}))); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
			if acted := tc.want == "acted"; acted != (len(ops.destroyed) == 1) {
				t.Errorf("destroyed %v", ops.destroyed)
			}
		})
	}
}
