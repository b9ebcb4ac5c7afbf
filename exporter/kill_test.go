package exporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// ghostCandidate is a confirmed silent ghost, ten minutes old at t0.
func ghostCandidate(cookie uint64) Candidate {
	sock := inventory.Socket{
		Netns: 4026531840, Family: inventory.FamilyInet, State: inventory.StateEstablished,
		Inode: 1000 + uint32(cookie), Cookie: cookie,
		Local:  netip.MustParseAddrPort("192.0.2.1:5432"),
		Remote: netip.MustParseAddrPort("198.51.100.7:40000"),
	}
	sock.Info.Len = 280
	sock.Info.SetOptional(1000, 2000, 0, 0)
	return Candidate{
		Session: Session{
			Netns: "host", Family: "inet", State: "ESTABLISHED",
			Local: "192.0.2.1:5432", Remote: "198.51.100.7:40000", Cookie: cookie,
			PID: 4242, Comm: "postgres", Unit: "postgresql.service", IdleSeconds: 412.5,
			Reasons: []string{"idle"}, Verdict: "silent", ProbesSent: 3, Ghost: true,
		},
		Socket:     sock,
		Reasons:    tracker.Reasons(0).With(tracker.ReasonIdle),
		Verdict:    probe.Silent,
		Confirmed:  true,
		GhostSince: t0.Add(-10 * time.Minute),
		PID:        4242,
	}
}

// reprobeAs is a Reprober whose every answer is a confirmed v.
func reprobeAs(v probe.Verdict) Reprober {
	return func(_ context.Context, keys []inventory.Key) []probe.Result {
		out := make([]probe.Result, len(keys))
		for i := range out {
			out[i] = probe.Result{Verdict: v, Confirmed: v.Ghost(), Sent: 3}
		}
		return out
	}
}

// newConfirmingKiller is NewKiller with a Reprober that confirms every ghost.
func newConfirmingKiller(p KillPolicy, ops SocketOps, store *Store, log *slog.Logger, now func() time.Time) *Killer {
	k := NewKiller(p, ops, store, log, now)
	k.SetReprober(reprobeAs(probe.Silent))
	return k
}

func closeWaitCandidate(cookie uint64) Candidate {
	c := ghostCandidate(cookie)
	c.Socket.Info.LastDataSent = 700_000 // nothing sent since before the peer's FIN (GhostSince 10 min ago)
	c.Socket.State = inventory.StateCloseWait
	c.Session.State = "CLOSE_WAIT"
	c.Reasons = tracker.Reasons(0).With(tracker.ReasonCloseWait)
	c.Session.Reasons = []string{"close_wait"}
	c.Verdict, c.Confirmed, c.Session.Ghost = probe.Unprobed, false, false
	return c
}

func enabled() KillPolicy {
	p := DefaultKillPolicy()
	p.Enabled = true
	return p
}

func TestDecide(t *testing.T) {
	mod := func(f func(*Candidate)) Candidate {
		c := ghostCandidate(1)
		f(&c)
		return c
	}
	pol := func(f func(*KillPolicy)) KillPolicy {
		p := enabled()
		f(&p)
		return p
	}
	rule := func(f func(*Rule)) Rule {
		var r Rule
		f(&r)
		return r
	}
	tests := []struct {
		name   string
		policy KillPolicy
		cand   Candidate
		ok     bool
		why    string
	}{
		{"confirmed silent ghost", enabled(), ghostCandidate(1), true, ""},
		{"reset", enabled(), mod(func(c *Candidate) { c.Verdict = probe.Reset }), true, ""},
		{"unreachable", enabled(), mod(func(c *Candidate) { c.Verdict = probe.Unreachable }), true, ""},
		{"disabled by default", DefaultKillPolicy(), ghostCandidate(1), false, "kill disabled"},
		{"alive never", enabled(), mod(func(c *Candidate) { c.Verdict = probe.Alive }), false, "alive: never killed"},
		{"alive never, even if allowed", pol(func(p *KillPolicy) { p.Verdicts = append(p.Verdicts, probe.Alive) }),
			mod(func(c *Candidate) { c.Verdict = probe.Alive }), false, "alive: never killed"},
		{"zero_window never", enabled(), mod(func(c *Candidate) { c.Reasons = c.Reasons.With(tracker.ReasonZeroWindow) }), false, "zero_window: peer alive, never killed"},
		{"unprobed", enabled(), mod(func(c *Candidate) { c.Verdict = probe.Unprobed }), false, "verdict unprobed not killable"},
		{"unconfirmed never", enabled(), mod(func(c *Candidate) { c.Confirmed = false }), false, "verdict not confirmed"},
		{"verdict not in policy", pol(func(p *KillPolicy) { p.Verdicts = []probe.Verdict{probe.Reset} }), ghostCandidate(1), false, "verdict silent not killable"},
		{"age unknown", enabled(), mod(func(c *Candidate) { c.GhostSince = time.Time{} }), false, "age unknown"},
		{"too young", enabled(), mod(func(c *Candidate) { c.GhostSince = t0.Add(-4*time.Minute - 59*time.Second) }), false, "younger than min age (4m59s < 5m0s)"},
		{"exactly min age", enabled(), mod(func(c *Candidate) { c.GhostSince = t0.Add(-5 * time.Minute) }), true, ""},
		{"min age zero", pol(func(p *KillPolicy) { p.MinAge = 0 }), mod(func(c *Candidate) { c.GhostSince = t0 }), true, ""},
		{"close_wait off by default", enabled(), closeWaitCandidate(1), false, "close_wait leaks not enabled"},
		{"close_wait on", pol(func(p *KillPolicy) { p.CloseWait = true }), closeWaitCandidate(1), true, ""},
		{"close_wait by state alone", enabled(), mod(func(c *Candidate) { c.Socket.State = inventory.StateCloseWait }), false, "close_wait leaks not enabled"},
		{"close_wait state without the reason is a normal close", pol(func(p *KillPolicy) { p.CloseWait = true }),
			mod(func(c *Candidate) { c.Socket.State = inventory.StateCloseWait }), false, "CLOSE_WAIT not yet a leak"},
		{"close_wait age from the tracker's threshold", pol(func(p *KillPolicy) { p.CloseWait = true }),
			func() Candidate { c := closeWaitCandidate(1); c.GhostSince = time.Time{}; return c }(), true, ""},
		{"close_wait reason without the state is no leak", pol(func(p *KillPolicy) { p.CloseWait = true }),
			mod(func(c *Candidate) { c.Reasons = c.Reasons.With(tracker.ReasonCloseWait); c.Verdict = probe.Unprobed }), false, "verdict unprobed not killable"},
		{"close_wait still needs age", pol(func(p *KillPolicy) { p.CloseWait = true }),
			func() Candidate { c := closeWaitCandidate(1); c.GhostSince = t0; return c }(), false, "younger than min age (0s < 5m0s)"},

		{"allow cidr match", pol(func(p *KillPolicy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.CIDRs = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")} })}
		}), ghostCandidate(1), true, ""},
		{"allow cidr miss", pol(func(p *KillPolicy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.CIDRs = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")} })}
		}), ghostCandidate(1), false, "not allowed by any rule"},
		{"allow cidr matches a v4-mapped remote", pol(func(p *KillPolicy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.CIDRs = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")} })}
		}), mod(func(c *Candidate) {
			c.Socket.Family = inventory.FamilyInet6
			c.Socket.Remote = netip.MustParseAddrPort("[::ffff:198.51.100.7]:40000")
		}), true, ""},
		{"deny local port", pol(func(p *KillPolicy) { p.Deny = []Rule{rule(func(r *Rule) { r.Ports = []uint16{22, 5432} })} }),
			ghostCandidate(1), false, "denied by rule 1"},
		{"deny remote port", pol(func(p *KillPolicy) { p.Deny = []Rule{rule(func(r *Rule) { r.Ports = []uint16{40000} })} }),
			ghostCandidate(1), false, "denied by rule 1"},
		{"deny port miss", pol(func(p *KillPolicy) { p.Deny = []Rule{rule(func(r *Rule) { r.Ports = []uint16{22} })} }),
			ghostCandidate(1), true, ""},
		{"deny netns glob", pol(func(p *KillPolicy) {
			p.Deny = []Rule{rule(func(r *Rule) { r.Ports = []uint16{1} }), rule(func(r *Rule) { r.Netns = []string{"ho*"} })}
		}), ghostCandidate(1), false, "denied by rule 2"},
		{"allow comm", pol(func(p *KillPolicy) { p.Allow = []Rule{rule(func(r *Rule) { r.Comms = []string{"nginx", "postgres"} })} }),
			ghostCandidate(1), true, ""},
		{"allow comm miss", pol(func(p *KillPolicy) { p.Allow = []Rule{rule(func(r *Rule) { r.Comms = []string{"nginx"} })} }),
			ghostCandidate(1), false, "not allowed by any rule"},
		{"allow unit glob", pol(func(p *KillPolicy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.Units = []string{"postgresql*.service"} })}
		}),
			ghostCandidate(1), true, ""},
		{"deny unit", pol(func(p *KillPolicy) { p.Deny = []Rule{rule(func(r *Rule) { r.Units = []string{"postgresql.service"} })} }),
			ghostCandidate(1), false, "denied by rule 1"},
		{"deny unit fails closed on an unknown owner", pol(func(p *KillPolicy) { p.Deny = []Rule{rule(func(r *Rule) { r.Units = []string{"sshd.service"} })} }),
			mod(func(c *Candidate) { c.PID, c.Session.PID, c.Session.Comm, c.Session.Unit = 0, 0, "", "" }), false, "denied by rule 1"},
		{"deny comm fails closed on an unknown owner", pol(func(p *KillPolicy) { p.Deny = []Rule{rule(func(r *Rule) { r.Comms = []string{"sshd"} })} }),
			mod(func(c *Candidate) { c.PID, c.Session.PID, c.Session.Comm, c.Session.Unit = 0, 0, "", "" }), false, "denied by rule 1"},
		{"deny unit on a known other owner", pol(func(p *KillPolicy) { p.Deny = []Rule{rule(func(r *Rule) { r.Units = []string{"sshd.service"} })} }),
			ghostCandidate(1), true, ""},
		{"deny unit on an unknown owner still needs the rule's other fields", pol(func(p *KillPolicy) {
			p.Deny = []Rule{rule(func(r *Rule) { r.Units = []string{"sshd.service"}; r.Ports = []uint16{22} })}
		}), mod(func(c *Candidate) { c.PID, c.Session.PID, c.Session.Comm, c.Session.Unit = 0, 0, "", "" }), true, ""},
		{"deny netns-only rule is not widened by an unknown owner", pol(func(p *KillPolicy) { p.Deny = []Rule{rule(func(r *Rule) { r.Netns = []string{"other"} })} }),
			mod(func(c *Candidate) { c.PID, c.Session.PID, c.Session.Comm, c.Session.Unit = 0, 0, "", "" }), true, ""},
		{"allow comm never matches an unknown owner", pol(func(p *KillPolicy) { p.Allow = []Rule{rule(func(r *Rule) { r.Comms = []string{"postgres"} })} }),
			mod(func(c *Candidate) { c.PID, c.Session.PID, c.Session.Comm, c.Session.Unit = 0, 0, "", "" }), false, "not allowed by any rule"},
		{"rule needs every field", pol(func(p *KillPolicy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.Comms = []string{"postgres"}; r.Ports = []uint16{22} })}
		}), ghostCandidate(1), false, "not allowed by any rule"},
		{"any allow rule suffices", pol(func(p *KillPolicy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.Comms = []string{"nginx"} }), rule(func(r *Rule) { r.Netns = []string{"host"} })}
		}), ghostCandidate(1), true, ""},
		{"deny beats allow", pol(func(p *KillPolicy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.Comms = []string{"postgres"} })}
			p.Deny = []Rule{rule(func(r *Rule) { r.CIDRs = []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")} })}
		}), ghostCandidate(1), false, "denied by rule 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t0}
			k := NewKiller(tt.policy, nil, nil, nil, clk.now)
			ok, why := k.Decide(tt.cand)
			if diff := cmp.Diff(struct {
				OK  bool
				Why string
			}{tt.ok, tt.why}, struct {
				OK  bool
				Why string
			}{ok, why}); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideMinAgeWithClock(t *testing.T) {
	clk := &fakeClock{t0}
	k := NewKiller(enabled(), nil, nil, nil, clk.now)
	c := ghostCandidate(1)
	c.GhostSince = t0
	if ok, _ := k.Decide(c); ok {
		t.Fatal("a new ghost was allowed")
	}
	clk.advance(5*time.Minute - time.Nanosecond)
	if ok, _ := k.Decide(c); ok {
		t.Fatal("allowed before min age")
	}
	clk.advance(time.Nanosecond)
	if ok, why := k.Decide(c); !ok {
		t.Fatalf("not allowed at min age: %s", why)
	}
}

func TestValidate(t *testing.T) {
	ok := enabled()
	if err := ok.Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	if err := DefaultKillPolicy().Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*KillPolicy)
		want string
	}{
		{"mode", func(p *KillPolicy) { p.Mode = "nuke" }, `exporter: unknown kill mode "nuke" (want destroy or keepalive)`},
		{"shutdown for ghosts", func(p *KillPolicy) { p.Mode = ModeShutdown }, "exporter: kill mode shutdown is for CLOSE_WAIT leaks only: enable close_wait instead"},
		{"no verdicts", func(p *KillPolicy) { p.Verdicts = nil }, "exporter: kill verdicts: none given"},
		{"alive verdict", func(p *KillPolicy) { p.Verdicts = []probe.Verdict{probe.Alive} }, `exporter: kill verdicts: "alive" is not a ghost verdict (want reset, silent or unreachable)`},
		{"negative age", func(p *KillPolicy) { p.MinAge = -time.Second }, "exporter: kill min age -1s is negative"},
		{"rate", func(p *KillPolicy) { p.PerMinute = 0 }, "exporter: kill rate 0 per minute: must be at least 1"},
		{"empty rule", func(p *KillPolicy) { p.Deny = []Rule{{}} }, "exporter: deny rule 1: empty rule matches everything"},
		{"bad glob", func(p *KillPolicy) { p.Allow = []Rule{{Comms: []string{"[x"}}} }, `exporter: allow rule 1: pattern "[x": syntax error in pattern`},
		{"bad prefix", func(p *KillPolicy) { p.Allow = []Rule{{CIDRs: []netip.Prefix{{}}}} }, `exporter: allow rule 1: invalid prefix "invalid Prefix"`},
		{"keepalive idle", func(p *KillPolicy) { p.Mode = ModeKeepalive; p.KeepaliveIdle = 1500 * time.Millisecond }, "exporter: keepalive idle 1.5s: want whole seconds between 1s and 32767s"},
		{"keepalive interval", func(p *KillPolicy) { p.Mode = ModeKeepalive; p.KeepaliveInterval = 0 }, "exporter: keepalive interval 0s: want whole seconds between 1s and 32767s"},
		{"keepalive count", func(p *KillPolicy) { p.Mode = ModeKeepalive; p.KeepaliveCount = 128 }, "exporter: keepalive count 128: want 1..127"},
		{"user timeout", func(p *KillPolicy) { p.Mode = ModeKeepalive; p.UserTimeout = -1 }, "exporter: user timeout -1ns out of range"},
	}
	for _, tt := range tests {
		p := enabled()
		tt.mod(&p)
		err := p.Validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%s: Validate() = %q, want %q", tt.name, got, tt.want)
		}
	}
}

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

func (f *fakeFDs) keepalive(pid int, inode uint32, p *KillPolicy) error {
	f.calls = append(f.calls, fmt.Sprintf("keepalive pid=%d inode=%d idle=%s", pid, inode, p.KeepaliveIdle))
	return f.err
}

func (f *fakeFDs) shutdownWrite(pid int, inode uint32) error {
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

func skips(recs []KillRecord) []string {
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

	store := NewStore(testBld, nil)
	k := newConfirmingKiller(enabled(), ops, store, nil, (&fakeClock{t0}).now)
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
	if err := testutil.CollectAndCompare(store.Collector(), strings.NewReader(`
# HELP ghostd_ghosts_killed_total Connections ended by the kill policy, by namespace and verdict.
# TYPE ghostd_ghosts_killed_total counter
ghostd_ghosts_killed_total{netns="host",verdict="silent"} 1
`), "ghostd_ghosts_killed_total"); err != nil {
		t.Error(err)
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
	var cands []Candidate
	for i := range 5 {
		cands = append(cands, ghostCandidate(uint64(i+1)))
	}
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
	store := NewStore(testBld, nil)
	k := newConfirmingKiller(p, ops, store, nil, (&fakeClock{t0}).now)
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
	want := `
# HELP ghostd_ghosts_killed_total Connections ended by the kill policy, by namespace and verdict.
# TYPE ghostd_ghosts_killed_total counter
ghostd_ghosts_killed_total{netns="host",verdict="close_wait"} 1
ghostd_ghosts_killed_total{netns="host",verdict="silent"} 1
`
	if err := testutil.CollectAndCompare(store.Collector(), strings.NewReader(want), "ghostd_ghosts_killed_total"); err != nil {
		t.Error(err)
	}
}

func TestApplyDestroyUnsupported(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	a, b := ghostCandidate(1), ghostCandidate(2)
	ops := opsWith(a, b)
	ops.destroyErr = fmt.Errorf("inventory: destroy: %w: %w", inventory.ErrDestroyUnsupported, errnoErrorForTest())
	store := NewStore(testBld, nil)
	store.SetKillSupported(true)
	k := newConfirmingKiller(enabled(), ops, store, log, (&fakeClock{t0}).now)
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
	want := `
# HELP ghostd_kill_supported Whether the configured kill mode works on this host (1) or not (0).
# TYPE ghostd_kill_supported gauge
ghostd_kill_supported 0
`
	if err := testutil.CollectAndCompare(store.Collector(), strings.NewReader(want), "ghostd_kill_supported"); err != nil {
		t.Error(err)
	}
}

func TestAuditLine(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := ghostCandidate(1)
	failing := ghostCandidate(2)
	ops := opsWith(c, failing)
	store := NewStore(testBld, nil)
	k := newConfirmingKiller(enabled(), ops, store, log, (&fakeClock{t0}).now)
	k.Apply(context.Background(), []Candidate{c})
	ops.destroyErr = errnoErrorForTest()
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
		"pid": 4242.0, "comm": "postgres", "unit": "postgresql.service",
		"verdict": "silent", "reasons": "idle", "probes_sent": 3.0, "replies": 0.0,
		"idle_seconds": 412.5, "ghost_seconds": 600.0, "mode": "destroy", "result": "ok", "error": "",
	}
	second := map[string]any{}
	for k, v := range base {
		second[k] = v
	}
	second["cookie"], second["level"], second["result"] = 2.0, "WARN", "error"
	second["error"] = errnoErrorForTest().Error()
	if diff := cmp.Diff([]map[string]any{base, second}, audits); diff != "" {
		t.Errorf("audit lines (-want +got):\n%s", diff)
	}
	want := `
# HELP ghostd_kill_errors_total Kill actions that failed, by namespace and errno.
# TYPE ghostd_kill_errors_total counter
ghostd_kill_errors_total{errno="` + errnoName(errnoErrorForTest()) + `",netns="host"} 1
`
	if err := testutil.CollectAndCompare(store.Collector(), strings.NewReader(want), "ghostd_kill_errors_total"); err != nil {
		t.Error(err)
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
	k := NewKiller(p, ops, nil, nil, (&fakeClock{t0}).now)
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
	var cands []Candidate
	for i := range 3 {
		cands = append(cands, ghostCandidate(uint64(i+1)))
	}
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
