package kill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// Candidate is a suspect the kill policy may act on.
type Candidate struct {
	Socket  inventory.Socket // as the scan saw it; re-checked before acting
	Netns   string           // the namespace's name as the JSON shows it, for rules and the audit line
	PID     int              // a process holding the socket, for the keepalive and shutdown modes; 0 if none was found
	Comm    string           // that process's name, for rules and the audit line
	Unit    string           // its systemd unit
	Reasons tracker.Reasons
	Verdict probe.Verdict
	// Confirmed is set when the verdict held after every probe attempt.
	Confirmed bool
	// GhostSince is when the socket was first a confirmed ghost (or first
	// reported as a CLOSE_WAIT leak). A ghost whose GhostSince is zero is
	// never killed; a leak's zero GhostSince leaves its age to the tracker's
	// close_wait threshold.
	GhostSince time.Time
	// For the audit line: the probes sent to the socket, the replies they
	// got, and how long it had received no data.
	ProbesSent  int
	Replies     int
	IdleSeconds float64

	// Pod is the socket's pod, "<k8s namespace>/<pod>", and Container its
	// owner's container name, as the container runtime names them; "" when
	// none or unknown. InContainer says the owner's cgroup names a container
	// (named or not), so a deny rule on pods or containers fails closed.
	Pod, Container string
	InContainer    bool
}

// podUnknown reports whether the socket may be a pod's or a container's
// that the runtime did not name: no owner found, or an owner in a container
// without a runtime name.
func (c *Candidate) podUnknown() bool {
	return c.Pod == "" && c.Container == "" && (c.ownerUnknown() || c.InContainer)
}

// ownerUnknown reports whether no process holding the socket was found.
func (c *Candidate) ownerUnknown() bool {
	return c.PID == 0 && c.Comm == "" && c.Unit == ""
}

// closeWait reports whether the candidate is a CLOSE_WAIT leak rather than a
// ghost. The socket's state decides, not the reason, so a shutdown is never
// aimed at a socket in any other state.
func (c *Candidate) closeWait() bool {
	return c.Socket.State == inventory.StateCloseWait
}

// SocketOps is what the killer needs from the kernel; the daemon implements
// it with the inventory.
type SocketOps interface {
	// Lookup finds the socket again by its exact identity (cookie included)
	// right before acting; found is false when it is gone.
	Lookup(s *inventory.Socket) (cur inventory.Socket, found bool, err error)
	// Destroy ends the socket with SOCK_DESTROY.
	Destroy(s *inventory.Socket) error
}

// fdOps acts on a socket through an fd borrowed from its owner.
type fdOps interface {
	keepalive(pid int, inode uint32, cookie uint64, p *Policy) error
	shutdownWrite(pid int, inode uint32, cookie uint64) error
}

// Record is the outcome for one candidate: Skipped says why nothing was
// done; otherwise Mode was applied and Err is its result.
type Record struct {
	Key     inventory.Key
	Mode    Mode
	Err     error
	Skipped string
}

// Reporter is told about kill actions, for the metrics; the exporter's
// Store implements it.
type Reporter interface {
	// ObserveKill counts one action in netns under a verdict label (the
	// verdict for ghosts, "close_wait" for leaks) with its result.
	ObserveKill(netns, verdict string, err error)
	// SetKillSupported says whether the configured kill mode works here.
	SetKillSupported(ok bool)
}

// Killer applies a Policy to candidates, rate-limited and audited.
type Killer struct {
	p   Policy
	ops SocketOps
	fds fdOps
	rep Reporter
	log *slog.Logger
	now func() time.Time

	mu                 sync.Mutex
	limiter            *rate.Limiter
	destroyUnsupported bool
	reprobe            Reprober
	// failed holds the sockets whose last kill failed, and when they may
	// be tried again: a socket that cannot be ended must not be retried at
	// every publish, starving the others.
	failed map[inventory.Key]killFailure
}

// Reprober probes the given ghosts again, right before they are killed, and
// returns the results in order (and records them, so an alive answer clears
// the ghost). A kill needs this fresh confirmation.
type Reprober func(ctx context.Context, keys []inventory.Key) []probe.Result

// killFailure is a socket's failed kills in a row and when to try again.
type killFailure struct {
	n    int
	next time.Time
}

// Failed kills back off per socket: killRetryMin doubling to killRetryMax.
const (
	killRetryMin = time.Minute
	killRetryMax = 30 * time.Minute
)

// New returns a killer for an already validated policy. rep and log may be
// nil; now defaults to time.Now.
func New(p Policy, ops SocketOps, rep Reporter, log *slog.Logger, now func() time.Time) *Killer {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	per := max(p.PerMinute, 1)
	return &Killer{
		p:       p,
		ops:     ops,
		fds:     pidfdOps{},
		rep:     rep,
		log:     log,
		now:     now,
		limiter: rate.NewLimiter(rate.Limit(float64(per)/60), per),
		failed:  make(map[inventory.Key]killFailure),
	}
}

// SetReprober sets how ghosts are re-probed right before a kill. Without
// one, no ghost is killed (a kill needs a fresh confirmation); CLOSE_WAIT
// leaks, which are not probed, need none.
func (k *Killer) SetReprober(r Reprober) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reprobe = r
}

// SetPolicy applies a reloaded policy. The rate limiter keeps the tokens it
// has (a reload must not refill it), and what the killer learned about the
// kernel and about failing sockets is kept.
func (k *Killer) SetPolicy(p Policy) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.p = p
	per := max(p.PerMinute, 1)
	now := k.now()
	k.limiter.SetLimitAt(now, rate.Limit(float64(per)/60))
	k.limiter.SetBurstAt(now, per)
}

// Policy returns the policy in force.
func (k *Killer) Policy() Policy {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.p
}

// Decide applies the pure policy to c: it never allows alive or zero_window
// connections, unconfirmed verdicts, ghosts younger than MinAge, denied or
// not-allowed connections, or CLOSE_WAIT sockets unless CloseWait is set and
// the tracker flagged them with the close_wait reason.
func (k *Killer) Decide(c Candidate) (ok bool, why string) {
	p := &k.p
	switch {
	case !p.Enabled:
		return false, "kill disabled"
	case c.Verdict == probe.Alive:
		return false, "alive: never killed"
	}
	if c.closeWait() {
		if !p.CloseWait {
			return false, "close_wait leaks not enabled"
		}
		// A socket passes through CLOSE_WAIT on every passive close: only
		// the tracker's close_wait reason (older than its threshold) makes it a leak.
		if !c.Reasons.Has(tracker.ReasonCloseWait) {
			return false, "CLOSE_WAIT not yet a leak"
		}
	} else {
		if !c.Reasons.CanGhost() {
			return false, fmt.Sprintf("reasons %s cannot make a ghost", c.Reasons)
		}
		if !slices.Contains(p.Verdicts, c.Verdict) {
			return false, fmt.Sprintf("verdict %s not killable", c.Verdict)
		}
		if !c.Confirmed {
			return false, "verdict not confirmed"
		}
		if c.GhostSince.IsZero() {
			return false, "age unknown"
		}
	}
	// For leaks GhostSince may be zero: the close_wait threshold stands in.
	if !c.GhostSince.IsZero() {
		if age := k.now().Sub(c.GhostSince); age < p.MinAge {
			return false, fmt.Sprintf("younger than min age (%s < %s)", age.Truncate(time.Second), p.MinAge)
		}
	}
	for i, r := range p.Deny {
		if r.Denies(&c) {
			return false, fmt.Sprintf("denied by rule %d", i+1)
		}
	}
	if len(p.Allow) > 0 && !slices.ContainsFunc(p.Allow, func(r Rule) bool { return r.Matches(&c) }) {
		return false, "not allowed by any rule"
	}
	return true, ""
}

// modeFor returns how c is ended: shutdown for CLOSE_WAIT leaks, else the policy's mode.
func (k *Killer) modeFor(c *Candidate) Mode {
	if c.closeWait() {
		return ModeShutdown
	}
	return k.p.Mode
}

// Apply decides every candidate, re-checks the allowed ones against the
// kernel, re-probes the ghosts among them (a kill needs a fresh
// confirmation, the last of at least two, MinAge after the first), re-checks
// those again, and acts on those still unchanged and still ghosts, within
// the rate limit. A failed
// action costs no rate token and backs off for that socket. Each action
// writes one audit line and is reported to the Reporter.
func (k *Killer) Apply(ctx context.Context, cands []Candidate) []Record {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	k.pruneFailed(now)
	out := make([]Record, len(cands))
	cur := make([]inventory.Socket, len(cands))
	// Re-probing costs a probe round, so only as many candidates as the
	// rate limit could act on go on to it.
	budget := int(k.limiter.TokensAt(now))
	var ready []int
	for i := range cands {
		c := &cands[i]
		out[i] = Record{Key: c.Socket.Key(), Mode: k.modeFor(c)}
		why := k.check(ctx, c, &cur[i], now)
		if why == "" && len(ready) >= budget {
			why = "rate limited"
		}
		out[i].Skipped = why
		if why == "" {
			ready = append(ready, i)
		}
	}
	k.confirm(ctx, cands, ready, out)
	for _, i := range ready {
		if out[i].Skipped == "" && !cands[i].closeWait() {
			// The re-probe took seconds: look again, as of now.
			out[i].Skipped = k.recheck(&cands[i], &cur[i], k.now())
		}
		if out[i].Skipped == "" {
			out[i].Skipped = k.act(&cands[i], &cur[i], &out[i], now)
		}
	}
	for i := range out {
		if out[i].Skipped != "" {
			c := &cands[i]
			k.log.Debug("kill skipped", "netns", c.Netns, "local", c.Socket.Local, "remote", c.Socket.Remote, "cookie", c.Socket.Cookie, "why", out[i].Skipped)
		}
	}
	return out
}

// check applies the policy and re-checks one candidate against the kernel.
// It returns why the candidate is skipped, or "" with *cur set to the
// socket as it is now.
func (k *Killer) check(ctx context.Context, c *Candidate, cur *inventory.Socket, now time.Time) string {
	if err := ctx.Err(); err != nil {
		return "canceled"
	}
	if ok, why := k.Decide(*c); !ok {
		return why
	}
	mode := k.modeFor(c)
	if mode == ModeDestroy && k.destroyUnsupported {
		return "destroy unsupported by this kernel"
	}
	if f, ok := k.failed[c.Socket.Key()]; ok && now.Before(f.next) {
		return fmt.Sprintf("backing off after %d failed kills (next try in %s)", f.n, f.next.Sub(now).Round(time.Second))
	}
	if k.ops == nil {
		return "no socket access"
	}
	if mode != ModeDestroy && (c.PID <= 0 || c.Socket.Inode == 0) {
		return "owner unknown: keepalive and shutdown need the owner's pid and the socket inode"
	}
	return k.recheck(c, cur, now)
}

// confirm re-probes the ghosts among cands[ready...] and marks those that
// are no longer confirmed ghosts skipped. CLOSE_WAIT leaks are not probed.
func (k *Killer) confirm(ctx context.Context, cands []Candidate, ready []int, out []Record) {
	var keys []inventory.Key
	var idx []int
	for _, i := range ready {
		if !cands[i].closeWait() {
			keys = append(keys, cands[i].Socket.Key())
			idx = append(idx, i)
		}
	}
	if len(keys) == 0 {
		return
	}
	if k.reprobe == nil {
		for _, i := range idx {
			out[i].Skipped = "no fresh confirmation: probing is off"
		}
		return
	}
	res := k.reprobe(ctx, keys)
	for j, i := range idx {
		if j >= len(res) {
			out[i].Skipped = "re-probe before the kill: no result"
			continue
		}
		r := res[j]
		switch {
		case r.Err != nil:
			out[i].Skipped = "re-probe before the kill failed: " + r.Err.Error()
		case !r.Verdict.Ghost() || !r.Confirmed:
			out[i].Skipped = fmt.Sprintf("re-probe before the kill: %s", r.Verdict)
		case !slices.Contains(k.p.Verdicts, r.Verdict):
			out[i].Skipped = fmt.Sprintf("re-probe before the kill: verdict %s not killable", r.Verdict)
		default:
			cands[i].Verdict = r.Verdict
		}
	}
}

// act ends one re-checked candidate and returns why it was skipped, or ""
// when it acted (rec.Err holds the result).
func (k *Killer) act(c *Candidate, cur *inventory.Socket, rec *Record, now time.Time) string {
	if rec.Mode == ModeDestroy && k.destroyUnsupported {
		return "destroy unsupported by this kernel" // learned from an earlier candidate of this pass
	}
	token := k.limiter.ReserveN(now, 1)
	if !token.OK() || token.DelayFrom(now) > 0 {
		token.CancelAt(now)
		return "rate limited"
	}
	switch rec.Mode {
	case ModeDestroy:
		rec.Err = k.ops.Destroy(cur)
	case ModeKeepalive:
		rec.Err = k.fds.keepalive(c.PID, cur.Inode, cur.Cookie, &k.p)
	case ModeShutdown:
		rec.Err = k.fds.shutdownWrite(c.PID, cur.Inode, cur.Cookie)
	}
	key := c.Socket.Key()
	if rec.Err != nil {
		token.CancelAt(now) // a failed action costs no token
		f := k.failed[key]
		f.n++
		f.next = now.Add(min(killRetryMin<<min(f.n-1, 10), killRetryMax))
		k.failed[key] = f
	} else {
		delete(k.failed, key)
	}
	if rec.Mode == ModeDestroy && destroyUnsupported(rec.Err) {
		k.destroyUnsupported = true
		k.log.Error("SOCK_DESTROY is not supported by this kernel (CONFIG_INET_DIAG_DESTROY); destroy mode is off until restart, use kill mode keepalive", "err", rec.Err)
		if k.rep != nil {
			k.rep.SetKillSupported(false)
		}
	}
	k.audit(c, cur, rec)
	if k.rep != nil {
		k.rep.ObserveKill(c.Netns, label(c), rec.Err)
	}
	return ""
}

// pruneFailed forgets failures whose retry time passed long ago: their
// sockets are gone or no longer candidates.
func (k *Killer) pruneFailed(now time.Time) {
	for key, f := range k.failed {
		if now.Sub(f.next) > killRetryMax {
			delete(k.failed, key)
		}
	}
}

// label is the verdict label a kill is counted under: the verdict for
// ghosts, "close_wait" for leaks (which are not probed).
func label(c *Candidate) string {
	if c.closeWait() {
		return "close_wait"
	}
	return string(c.Verdict)
}

// destroyUnsupported reports whether a SOCK_DESTROY error means the kernel
// cannot destroy sockets at all (CONFIG_INET_DIAG_DESTROY missing).
func destroyUnsupported(err error) bool {
	return errors.Is(err, inventory.ErrDestroyUnsupported)
}
