package kill

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

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
	// The peer's last ACK came long before it was confirmed a ghost (10 min
	// before t0), even for tests whose clock runs on for an hour.
	sock.Info.LastAckRecv = uint32((24 * time.Hour).Milliseconds())
	return Candidate{
		Socket:      sock,
		Netns:       "host",
		PID:         4242,
		Comm:        "postgres",
		Unit:        "postgresql.service",
		Reasons:     tracker.Reasons(0).With(tracker.ReasonIdle),
		Verdict:     probe.Silent,
		Confirmed:   true,
		GhostSince:  t0.Add(-10 * time.Minute),
		ProbesSent:  3,
		IdleSeconds: 412.5,
	}
}

// ghostCandidates is n ghost candidates, cookies 1 to n.
func ghostCandidates(n int) []Candidate {
	cands := make([]Candidate, n)
	for i := range cands {
		cands[i] = ghostCandidate(uint64(i + 1))
	}
	return cands
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

// newConfirmingKiller is New with a Reprober that confirms every ghost.
func newConfirmingKiller(p Policy, ops SocketOps, rep Reporter, log *slog.Logger, now func() time.Time) *Killer {
	k := New(p, ops, rep, log, now)
	k.SetReprober(reprobeAs(probe.Silent))
	return k
}

func closeWaitCandidate(cookie uint64) Candidate {
	c := ghostCandidate(cookie)
	c.Socket.Info.LastDataSent = 700_000 // nothing sent since before the peer's FIN (GhostSince 10 min ago)
	c.Socket.State = inventory.StateCloseWait
	c.Reasons = tracker.Reasons(0).With(tracker.ReasonCloseWait)
	c.Verdict, c.Confirmed = probe.Unprobed, false
	return c
}

func enabled() Policy {
	p := DefaultPolicy()
	p.Enabled = true
	return p
}

func TestDecide(t *testing.T) {
	mod := func(f func(*Candidate)) Candidate {
		c := ghostCandidate(1)
		f(&c)
		return c
	}
	pol := func(f func(*Policy)) Policy {
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
		policy Policy
		cand   Candidate
		ok     bool
		why    string
	}{
		{"confirmed silent ghost", enabled(), ghostCandidate(1), true, ""},
		{"reset", enabled(), mod(func(c *Candidate) { c.Verdict = probe.Reset }), true, ""},
		{"unreachable", enabled(), mod(func(c *Candidate) { c.Verdict = probe.Unreachable }), true, ""},
		{"disabled by default", DefaultPolicy(), ghostCandidate(1), false, "kill disabled"},
		{"alive never", enabled(), mod(func(c *Candidate) { c.Verdict = probe.Alive }), false, "alive: never killed"},
		{"alive never, even if allowed", pol(func(p *Policy) { p.Verdicts = append(p.Verdicts, probe.Alive) }),
			mod(func(c *Candidate) { c.Verdict = probe.Alive }), false, "alive: never killed"},
		{"zero_window never", enabled(), mod(func(c *Candidate) { c.Reasons = c.Reasons.With(tracker.ReasonZeroWindow) }), false, "reasons idle,zero_window cannot make a ghost"},
		{"no probeable reason", enabled(), mod(func(c *Candidate) { c.Reasons = tracker.Reasons(0).With(tracker.ReasonFinWait2) }), false, "reasons fin_wait2 cannot make a ghost"},
		{"unprobed", enabled(), mod(func(c *Candidate) { c.Verdict = probe.Unprobed }), false, "verdict unprobed not killable"},
		{"unconfirmed never", enabled(), mod(func(c *Candidate) { c.Confirmed = false }), false, "verdict not confirmed"},
		{"verdict not in policy", pol(func(p *Policy) { p.Verdicts = []probe.Verdict{probe.Reset} }), ghostCandidate(1), false, "verdict silent not killable"},
		{"age unknown", enabled(), mod(func(c *Candidate) { c.GhostSince = time.Time{} }), false, "age unknown"},
		{"too young", enabled(), mod(func(c *Candidate) { c.GhostSince = t0.Add(-4*time.Minute - 59*time.Second) }), false, "younger than min age (4m59s < 5m0s)"},
		{"exactly min age", enabled(), mod(func(c *Candidate) { c.GhostSince = t0.Add(-5 * time.Minute) }), true, ""},
		{"min age zero", pol(func(p *Policy) { p.MinAge = 0 }), mod(func(c *Candidate) { c.GhostSince = t0 }), true, ""},
		{"close_wait off by default", enabled(), closeWaitCandidate(1), false, "close_wait leaks not enabled"},
		{"close_wait on", pol(func(p *Policy) { p.CloseWait = true }), closeWaitCandidate(1), true, ""},
		{"close_wait by state alone", enabled(), mod(func(c *Candidate) { c.Socket.State = inventory.StateCloseWait }), false, "close_wait leaks not enabled"},
		{"close_wait state without the reason is a normal close", pol(func(p *Policy) { p.CloseWait = true }),
			mod(func(c *Candidate) { c.Socket.State = inventory.StateCloseWait }), false, "CLOSE_WAIT not yet a leak"},
		{"close_wait age from the tracker's threshold", pol(func(p *Policy) { p.CloseWait = true }),
			func() Candidate { c := closeWaitCandidate(1); c.GhostSince = time.Time{}; return c }(), true, ""},
		{"close_wait reason without the state is no leak", pol(func(p *Policy) { p.CloseWait = true }),
			mod(func(c *Candidate) { c.Reasons = c.Reasons.With(tracker.ReasonCloseWait); c.Verdict = probe.Unprobed }), false, "verdict unprobed not killable"},
		{"close_wait still needs age", pol(func(p *Policy) { p.CloseWait = true }),
			func() Candidate { c := closeWaitCandidate(1); c.GhostSince = t0; return c }(), false, "younger than min age (0s < 5m0s)"},

		{"allow cidr match", pol(func(p *Policy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.CIDRs = []CIDR{mustCIDR("198.51.100.0/24")} })}
		}), ghostCandidate(1), true, ""},
		{"allow cidr miss", pol(func(p *Policy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.CIDRs = []CIDR{mustCIDR("203.0.113.0/24")} })}
		}), ghostCandidate(1), false, "not allowed by any rule"},
		{"allow cidr matches a v4-mapped remote", pol(func(p *Policy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.CIDRs = []CIDR{mustCIDR("198.51.100.0/24")} })}
		}), mod(func(c *Candidate) {
			c.Socket.Family = inventory.FamilyInet6
			c.Socket.Remote = netip.MustParseAddrPort("[::ffff:198.51.100.7]:40000")
		}), true, ""},
		{"deny cidr written as ghostd prints a v4-mapped remote", pol(func(p *Policy) {
			p.Deny = []Rule{rule(func(r *Rule) { r.CIDRs = []CIDR{mustCIDR("::ffff:198.51.100.7")} })}
		}), mod(func(c *Candidate) {
			c.Socket.Family = inventory.FamilyInet6
			c.Socket.Remote = netip.MustParseAddrPort("[::ffff:198.51.100.7]:40000")
		}), false, "denied by rule 1"},
		{"deny v4-mapped cidr covers the IPv4 socket too", pol(func(p *Policy) {
			p.Deny = []Rule{rule(func(r *Rule) { r.CIDRs = []CIDR{mustCIDR("::ffff:198.51.100.0/120")} })}
		}), ghostCandidate(1), false, "denied by rule 1"},
		{"deny local port", pol(func(p *Policy) { p.Deny = []Rule{rule(func(r *Rule) { r.Ports = []int{22, 5432} })} }),
			ghostCandidate(1), false, "denied by rule 1"},
		{"deny remote port", pol(func(p *Policy) { p.Deny = []Rule{rule(func(r *Rule) { r.Ports = []int{40000} })} }),
			ghostCandidate(1), false, "denied by rule 1"},
		{"deny port miss", pol(func(p *Policy) { p.Deny = []Rule{rule(func(r *Rule) { r.Ports = []int{22} })} }),
			ghostCandidate(1), true, ""},
		{"deny netns glob", pol(func(p *Policy) {
			p.Deny = []Rule{rule(func(r *Rule) { r.Ports = []int{1} }), rule(func(r *Rule) { r.Netns = []string{"ho*"} })}
		}), ghostCandidate(1), false, "denied by rule 2"},
		{"allow comm", pol(func(p *Policy) { p.Allow = []Rule{rule(func(r *Rule) { r.Comms = []string{"nginx", "postgres"} })} }),
			ghostCandidate(1), true, ""},
		{"allow comm miss", pol(func(p *Policy) { p.Allow = []Rule{rule(func(r *Rule) { r.Comms = []string{"nginx"} })} }),
			ghostCandidate(1), false, "not allowed by any rule"},
		{"allow unit glob", pol(func(p *Policy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.Units = []string{"postgresql*.service"} })}
		}),
			ghostCandidate(1), true, ""},
		{"deny unit", pol(func(p *Policy) { p.Deny = []Rule{rule(func(r *Rule) { r.Units = []string{"postgresql.service"} })} }),
			ghostCandidate(1), false, "denied by rule 1"},
		{"deny unit fails closed on an unknown owner", pol(func(p *Policy) { p.Deny = []Rule{rule(func(r *Rule) { r.Units = []string{"sshd.service"} })} }),
			mod(func(c *Candidate) { c.PID, c.Comm, c.Unit = 0, "", "" }), false, "denied by rule 1"},
		{"deny comm fails closed on an unknown owner", pol(func(p *Policy) { p.Deny = []Rule{rule(func(r *Rule) { r.Comms = []string{"sshd"} })} }),
			mod(func(c *Candidate) { c.PID, c.Comm, c.Unit = 0, "", "" }), false, "denied by rule 1"},
		{"deny unit on a known other owner", pol(func(p *Policy) { p.Deny = []Rule{rule(func(r *Rule) { r.Units = []string{"sshd.service"} })} }),
			ghostCandidate(1), true, ""},
		{"deny unit on an unknown owner still needs the rule's other fields", pol(func(p *Policy) {
			p.Deny = []Rule{rule(func(r *Rule) { r.Units = []string{"sshd.service"}; r.Ports = []int{22} })}
		}), mod(func(c *Candidate) { c.PID, c.Comm, c.Unit = 0, "", "" }), true, ""},
		{"deny netns-only rule is not widened by an unknown owner", pol(func(p *Policy) { p.Deny = []Rule{rule(func(r *Rule) { r.Netns = []string{"other"} })} }),
			mod(func(c *Candidate) { c.PID, c.Comm, c.Unit = 0, "", "" }), true, ""},
		{"allow comm never matches an unknown owner", pol(func(p *Policy) { p.Allow = []Rule{rule(func(r *Rule) { r.Comms = []string{"postgres"} })} }),
			mod(func(c *Candidate) { c.PID, c.Comm, c.Unit = 0, "", "" }), false, "not allowed by any rule"},
		{"rule needs every field", pol(func(p *Policy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.Comms = []string{"postgres"}; r.Ports = []int{22} })}
		}), ghostCandidate(1), false, "not allowed by any rule"},
		{"any allow rule suffices", pol(func(p *Policy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.Comms = []string{"nginx"} }), rule(func(r *Rule) { r.Netns = []string{"host"} })}
		}), ghostCandidate(1), true, ""},
		{"deny beats allow", pol(func(p *Policy) {
			p.Allow = []Rule{rule(func(r *Rule) { r.Comms = []string{"postgres"} })}
			p.Deny = []Rule{rule(func(r *Rule) { r.CIDRs = []CIDR{mustCIDR("198.51.100.7/32")} })}
		}), ghostCandidate(1), false, "denied by rule 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t0}
			k := New(tt.policy, nil, nil, nil, clk.now)
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
	k := New(enabled(), nil, nil, nil, clk.now)
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
