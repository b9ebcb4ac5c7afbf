package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// KillMode says how a connection is ended.
type KillMode string

// Kill modes (see "Kill policy" in docs/design.md).
const (
	// ModeDestroy sends SOCK_DESTROY: a RST to the peer, ECONNABORTED to the owner.
	ModeDestroy KillMode = "destroy"
	// ModeKeepalive arms the kernel's own keepalive and user timeout on the
	// owner's socket, so the kernel verifies and reaps it: the owner sees ETIMEDOUT.
	ModeKeepalive KillMode = "keepalive"
	// ModeShutdown shuts down the output side of a CLOSE_WAIT leak: the FIN
	// completes the close the owner forgot, without a RST. Never used on ghosts.
	ModeShutdown KillMode = "shutdown"
)

// Rule selects connections. It matches when every non-empty field matches;
// within a field, any entry may match. An empty rule is invalid.
type Rule struct {
	CIDRs []netip.Prefix // the remote address is in one of them
	Ports []uint16       // the local or the remote port is one of them
	Netns []string       // the namespace name matches one of these path.Match patterns
	Comms []string       // the owner's comm matches one of these patterns
	Units []string       // the owner's systemd unit matches one of these patterns
}

// KillPolicy is the validated kill configuration. Killing is off by default.
type KillPolicy struct {
	Enabled  bool
	Mode     KillMode        // destroy or keepalive, for ghosts
	Verdicts []probe.Verdict // ghost verdicts that may be killed
	MinAge   time.Duration   // how long a confirmed ghost must have been one
	Allow    []Rule          // empty: allow all
	Deny     []Rule          // beats Allow
	// PerMinute bounds kill actions: a token bucket of PerMinute tokens,
	// refilled at PerMinute per minute.
	PerMinute int
	// CloseWait allows ending CLOSE_WAIT leaks, always with ModeShutdown.
	CloseWait bool

	// Keepalive mode settings.
	KeepaliveIdle     time.Duration // TCP_KEEPIDLE, whole seconds 1..32767
	KeepaliveInterval time.Duration // TCP_KEEPINTVL, whole seconds 1..32767
	KeepaliveCount    int           // TCP_KEEPCNT, 1..127
	UserTimeout       time.Duration // TCP_USER_TIMEOUT; 0 leaves it unchanged
}

// DefaultKillPolicy returns the defaults: disabled, destroy mode, every ghost
// verdict, 5 minutes minimum age, 10 kills a minute, CLOSE_WAIT leaks left alone.
func DefaultKillPolicy() KillPolicy {
	return KillPolicy{
		Mode:              ModeDestroy,
		Verdicts:          []probe.Verdict{probe.Reset, probe.Silent, probe.Unreachable},
		MinAge:            5 * time.Minute,
		PerMinute:         10,
		KeepaliveIdle:     10 * time.Second,
		KeepaliveInterval: 5 * time.Second,
		KeepaliveCount:    3,
		UserTimeout:       30 * time.Second,
	}
}

// Validate reports the first problem with the policy.
func (p KillPolicy) Validate() error {
	switch p.Mode {
	case ModeDestroy, ModeKeepalive:
	case ModeShutdown:
		return errors.New("exporter: kill mode shutdown is for CLOSE_WAIT leaks only: enable close_wait instead")
	default:
		return fmt.Errorf("exporter: unknown kill mode %q (want destroy or keepalive)", p.Mode)
	}
	if len(p.Verdicts) == 0 {
		return errors.New("exporter: kill verdicts: none given")
	}
	for _, v := range p.Verdicts {
		if !v.Ghost() {
			return fmt.Errorf("exporter: kill verdicts: %q is not a ghost verdict (want reset, silent or unreachable)", v)
		}
	}
	if p.MinAge < 0 {
		return fmt.Errorf("exporter: kill min age %s is negative", p.MinAge)
	}
	if p.PerMinute < 1 {
		return fmt.Errorf("exporter: kill rate %d per minute: must be at least 1", p.PerMinute)
	}
	for i, r := range p.Allow {
		if err := r.validate(); err != nil {
			return fmt.Errorf("exporter: allow rule %d: %w", i+1, err)
		}
	}
	for i, r := range p.Deny {
		if err := r.validate(); err != nil {
			return fmt.Errorf("exporter: deny rule %d: %w", i+1, err)
		}
	}
	if p.Mode == ModeKeepalive {
		if err := checkSeconds("keepalive idle", p.KeepaliveIdle, 32767); err != nil {
			return err
		}
		if err := checkSeconds("keepalive interval", p.KeepaliveInterval, 32767); err != nil {
			return err
		}
		if p.KeepaliveCount < 1 || p.KeepaliveCount > 127 {
			return fmt.Errorf("exporter: keepalive count %d: want 1..127", p.KeepaliveCount)
		}
		if p.UserTimeout < 0 || p.UserTimeout.Milliseconds() > 1<<31-1 {
			return fmt.Errorf("exporter: user timeout %s out of range", p.UserTimeout)
		}
	}
	return nil
}

func checkSeconds(what string, d time.Duration, max int) error {
	if d < time.Second || d%time.Second != 0 || int(d/time.Second) > max {
		return fmt.Errorf("exporter: %s %s: want whole seconds between 1s and %ds", what, d, max)
	}
	return nil
}

func (r Rule) validate() error {
	if len(r.CIDRs) == 0 && len(r.Ports) == 0 && len(r.Netns) == 0 && len(r.Comms) == 0 && len(r.Units) == 0 {
		return errors.New("empty rule matches everything")
	}
	for _, p := range r.CIDRs {
		if !p.IsValid() {
			return fmt.Errorf("invalid prefix %q", p)
		}
	}
	for _, list := range [][]string{r.Netns, r.Comms, r.Units} {
		for _, pat := range list {
			if _, err := path.Match(pat, ""); err != nil {
				return fmt.Errorf("pattern %q: %w", pat, err)
			}
		}
	}
	return nil
}

// Matches reports whether the rule selects the candidate, as an allow rule
// does: an owner that is not known matches no comm or unit pattern.
func (r Rule) Matches(c *Candidate) bool { return r.matches(c, false) }

// Denies reports whether the rule, as a deny rule, selects the candidate. It
// fails closed: when the rule names comms or units and the socket's owner is
// not known (io_uring fixed files, sockets in flight over SCM_RIGHTS, an
// unreadable /proc, a race with exec), the owner counts as matching, so
// "deny: units: [sshd.service]" also protects an sshd socket whose owner
// could not be found.
func (r Rule) Denies(c *Candidate) bool { return r.matches(c, true) }

// ownerUnknown reports whether no process holding the socket was found.
func (c *Candidate) ownerUnknown() bool {
	return c.PID == 0 && c.Session.PID == 0 && c.Session.Comm == "" && c.Session.Unit == ""
}

func (r Rule) matches(c *Candidate, failClosed bool) bool {
	if len(r.CIDRs) > 0 {
		addr := c.Socket.Remote.Addr().Unmap()
		if !slices.ContainsFunc(r.CIDRs, func(p netip.Prefix) bool { return p.Contains(addr) }) {
			return false
		}
	}
	if len(r.Ports) > 0 && !slices.Contains(r.Ports, c.Socket.Local.Port()) && !slices.Contains(r.Ports, c.Socket.Remote.Port()) {
		return false
	}
	if !matchAny(r.Netns, c.Session.Netns) {
		return false
	}
	if failClosed && (len(r.Comms) > 0 || len(r.Units) > 0) && c.ownerUnknown() {
		return true
	}
	return matchAny(r.Comms, c.Session.Comm) && matchAny(r.Units, c.Session.Unit)
}

// matchAny reports whether s matches one of the patterns; no patterns match anything.
func matchAny(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

// Candidate is a suspect the kill policy may act on.
type Candidate struct {
	Session Session          // for rules and the audit line
	Socket  inventory.Socket // as the scan saw it; re-checked before acting
	Reasons tracker.Reasons
	Verdict probe.Verdict
	// Confirmed is set when the verdict held after every probe attempt.
	Confirmed bool
	// GhostSince is when the socket was first a confirmed ghost (or first
	// reported as a CLOSE_WAIT leak). A ghost whose GhostSince is zero is
	// never killed; a leak's zero GhostSince leaves its age to the tracker's
	// close_wait threshold.
	GhostSince time.Time
	PID        int // a process holding the socket, for the keepalive and shutdown modes
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

// ConnOps implements SocketOps with the inventory's sock_diag connections:
// Conn returns the open Conn of the namespace with the given inode.
type ConnOps struct {
	Conn func(netns uint64) (*inventory.Conn, error)
}

// Lookup finds s again in its namespace, cookie included.
func (o ConnOps) Lookup(s *inventory.Socket) (inventory.Socket, bool, error) {
	c, err := o.Conn(s.Netns)
	if err != nil {
		return inventory.Socket{}, false, err
	}
	return c.Lookup(s.Netns, s)
}

// Destroy sends SOCK_DESTROY for s from its namespace.
func (o ConnOps) Destroy(s *inventory.Socket) error {
	c, err := o.Conn(s.Netns)
	if err != nil {
		return err
	}
	return c.Destroy(s)
}

// fdOps acts on a socket through an fd borrowed from its owner.
type fdOps interface {
	keepalive(pid int, inode uint32, p *KillPolicy) error
	shutdownWrite(pid int, inode uint32) error
}

// KillRecord is the outcome for one candidate: Skipped says why nothing was
// done; otherwise Mode was applied and Err is its result.
type KillRecord struct {
	Key     inventory.Key
	Mode    KillMode
	Err     error
	Skipped string
}

// Killer applies a KillPolicy to candidates, rate-limited and audited.
type Killer struct {
	p     KillPolicy
	ops   SocketOps
	fds   fdOps
	store *Store
	log   *slog.Logger
	now   func() time.Time

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

// NewKiller returns a killer for an already validated policy. store and log
// may be nil; now defaults to time.Now.
func NewKiller(p KillPolicy, ops SocketOps, store *Store, log *slog.Logger, now func() time.Time) *Killer {
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
		store:   store,
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
func (k *Killer) SetPolicy(p KillPolicy) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.p = p
	per := max(p.PerMinute, 1)
	now := k.now()
	k.limiter.SetLimitAt(now, rate.Limit(float64(per)/60))
	k.limiter.SetBurstAt(now, per)
}

// Policy returns the policy in force.
func (k *Killer) Policy() KillPolicy {
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
	case c.Reasons.Has(tracker.ReasonZeroWindow):
		return false, "zero_window: peer alive, never killed"
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
func (k *Killer) modeFor(c *Candidate) KillMode {
	if c.closeWait() {
		return ModeShutdown
	}
	return k.p.Mode
}

// Apply decides every candidate, re-checks the allowed ones against the
// kernel, re-probes the ghosts among them (a kill needs a fresh
// confirmation, the last of at least two, MinAge after the first), and acts
// on those still unchanged and still ghosts, within the rate limit. A failed
// action costs no rate token and backs off for that socket. Each action
// writes one audit line and is counted in the store.
func (k *Killer) Apply(ctx context.Context, cands []Candidate) []KillRecord {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	k.pruneFailed(now)
	out := make([]KillRecord, len(cands))
	cur := make([]inventory.Socket, len(cands))
	// Re-probing costs a probe round, so only as many candidates as the
	// rate limit could act on go on to it.
	budget := int(k.limiter.TokensAt(now))
	var ready []int
	for i := range cands {
		c := &cands[i]
		out[i] = KillRecord{Key: c.Socket.Key(), Mode: k.modeFor(c)}
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
		if out[i].Skipped == "" {
			out[i].Skipped = k.act(&cands[i], &cur[i], &out[i], now)
		}
	}
	for i := range out {
		if out[i].Skipped != "" {
			c := &cands[i]
			k.log.Debug("kill skipped", "netns", c.Session.Netns, "local", c.Session.Local, "remote", c.Session.Remote, "cookie", c.Socket.Cookie, "why", out[i].Skipped)
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
	s, found, err := k.ops.Lookup(&c.Socket)
	switch {
	case err != nil:
		return "re-check failed: " + err.Error()
	case !found:
		return "gone"
	case s.Cookie != c.Socket.Cookie || s.Netns != c.Socket.Netns:
		return "cookie changed"
	case s.State != c.Socket.State:
		return fmt.Sprintf("state changed to %s", s.State)
	case progressed(&c.Socket, &s):
		return "now healthy: bytes moved since the scan"
	}
	if c.closeWait() {
		if why := closeWaitBusy(c, &s, now); why != "" {
			return why
		}
	}
	*cur = s
	return ""
}

// closeWaitBusy returns why a CLOSE_WAIT socket must not be shut down yet,
// or "". A client that half-closes (nc -N, rsync, HTTP/1.0 and some RPC
// clients) leaves the server in CLOSE_WAIT while it still computes and
// writes its answer: only a socket whose owner has sent nothing since the
// peer's FIN and has nothing queued or in flight is a leak.
func closeWaitBusy(c *Candidate, s *inventory.Socket, now time.Time) string {
	switch {
	case !s.Info.Valid():
		return "CLOSE_WAIT activity unknown (no tcp_info)"
	case s.WQueue > 0 || s.Info.Unacked > 0:
		return "CLOSE_WAIT socket still sending"
	case c.GhostSince.IsZero():
		return "CLOSE_WAIT age unknown"
	}
	quiet := time.Duration(s.Info.LastDataSent) * time.Millisecond
	if in := now.Sub(c.GhostSince); quiet < in {
		return fmt.Sprintf("CLOSE_WAIT socket sent data %s ago, after the peer closed %s ago", quiet.Round(time.Second), in.Round(time.Second))
	}
	return ""
}

// confirm re-probes the ghosts among cands[ready...] and marks those that
// are no longer confirmed ghosts skipped. CLOSE_WAIT leaks are not probed.
func (k *Killer) confirm(ctx context.Context, cands []Candidate, ready []int, out []KillRecord) {
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
func (k *Killer) act(c *Candidate, cur *inventory.Socket, rec *KillRecord, now time.Time) string {
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
		rec.Err = k.fds.keepalive(c.PID, cur.Inode, &k.p)
	case ModeShutdown:
		rec.Err = k.fds.shutdownWrite(c.PID, cur.Inode)
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
		if k.store != nil {
			k.store.SetKillSupported(false)
		}
	}
	k.audit(c, cur, rec)
	if k.store != nil {
		k.store.ObserveKill(c.Session.Netns, killLabel(c), rec.Err)
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

// killLabel is the verdict label a kill is counted under: the verdict for
// ghosts, "close_wait" for leaks (which are not probed).
func killLabel(c *Candidate) string {
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

// progressed reports whether the connection moved data between the scan and
// the re-check: then it is not dead, whatever the probe said.
func progressed(old, cur *inventory.Socket) bool {
	if a, ok := old.Info.BytesReceived(); ok {
		if b, ok := cur.Info.BytesReceived(); ok && b != a {
			return true
		}
	}
	if a, ok := old.Info.BytesAcked(); ok {
		if b, ok := cur.Info.BytesAcked(); ok && b != a {
			return true
		}
	}
	return false
}

// audit writes the one structured line for a kill action.
func (k *Killer) audit(c *Candidate, cur *inventory.Socket, rec *KillRecord) {
	result, level := "ok", slog.LevelInfo
	errText := ""
	if rec.Err != nil {
		result, level, errText = "error", slog.LevelWarn, rec.Err.Error()
	}
	k.log.LogAttrs(context.Background(), level, "kill",
		slog.Bool("audit", true),
		slog.String("netns", c.Session.Netns),
		slog.Uint64("netns_inode", cur.Netns),
		slog.String("local", cur.Local.String()),
		slog.String("remote", cur.Remote.String()),
		slog.Uint64("cookie", cur.Cookie),
		slog.String("state", cur.State.String()),
		slog.Int("pid", c.PID),
		slog.String("comm", c.Session.Comm),
		slog.String("unit", c.Session.Unit),
		slog.String("verdict", string(c.Verdict)),
		slog.String("reasons", c.Reasons.String()),
		slog.Int("probes_sent", c.Session.ProbesSent),
		slog.Int("replies", c.Session.Replies),
		slog.Float64("idle_seconds", c.Session.IdleSeconds),
		slog.Float64("ghost_seconds", k.now().Sub(c.GhostSince).Seconds()),
		slog.String("mode", string(rec.Mode)),
		slog.String("result", result),
		slog.String("error", errText),
	)
}
