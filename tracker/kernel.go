package tracker

import (
	"time"

	"github.com/ghostd/ghostd/inventory"
)

// KeepaliveSettings are a socket's own keepalive settings, as TCP_KEEPIDLE,
// TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT set them. A zero field is
// unset: the namespace's sysctl for the first three, no user timeout for the
// last. sock_diag does not report them; a BPF iterator can (see
// Tracker.SetKeepalive).
type KeepaliveSettings struct {
	Time, Intvl time.Duration
	Probes      int
	UserTimeout time.Duration
}

// Kernel is what the tracker works out about a socket's own kernel: the
// keepalive settings it uses and when it would notice a dead peer.
type Kernel struct {
	// Keepalive are the settings in effect: the socket's own where known
	// (PerSocket), else the namespace's sysctls, raised to what the socket's
	// timer proves (see the README, "Keepalive-on sockets").
	Keepalive KeepaliveSettings
	PerSocket bool
	Retries2  int // the namespace's net.ipv4.tcp_retries2
	Deadline  Deadline
}

// Deadline is when the socket's kernel would itself give up on a silent
// peer, counted from the observation (Entry.LastSeen).
type Deadline struct {
	// Basis says what decides it: DeadlineKeepalive, DeadlineUserTimeout,
	// DeadlineRetransmit, DeadlineZeroWindow, DeadlineTimeWait, DeadlineNone
	// (no keepalive and nothing in flight: never) or DeadlineUnknown.
	Basis string
	// Never: the kernel would never notice (keepalive off, nothing in
	// flight; or a zero window whose peer answers). Never and Unknown bases
	// have no In.
	Never bool
	In    time.Duration
	// LowerBound: the kernel notices no earlier than In (keepalive: the next
	// timer expiry is a lower bound for the next probe). Otherwise In is an
	// approximation (retransmissions: the kernel's backoff model from the
	// minimum RTO).
	LowerBound bool
}

// Deadline bases.
const (
	DeadlineKeepalive   = "keepalive"
	DeadlineUserTimeout = "user_timeout"
	DeadlineRetransmit  = "retransmit"
	DeadlineZeroWindow  = "zero_window"
	DeadlineTimeWait    = "time_wait"
	DeadlineNone        = "none"
	DeadlineUnknown     = "unknown"
)

// Known reports whether the deadline is a time (not never, not unknown).
func (d Deadline) Known() bool { return !d.Never && d.Basis != DeadlineUnknown && d.Basis != "" }

// kernelSettings is KeepaliveSettings filled in for one socket.
type kernelSettings struct {
	time, intvl time.Duration
	probes      int
	userTimeout time.Duration
	retries2    int
	perSocket   bool
}

// settingsFor returns the settings the kernel uses for s: own where known
// and set, else the namespace's sysctls. Without own settings, the sysctl
// guess is raised to what s itself proves (errors go toward "suspect": a
// longer keepalive time only makes ghostd probe a socket the kernel would
// have checked soon enough):
//   - with no keepalive probe out, the timer never runs further ahead than
//     the keepalive time (it is armed for keepalive_time − elapsed), so the
//     time is at least idiag_expires;
//   - with no probe out, no probe was sent since the last receive (an
//     answered probe refreshes it, an unanswered one counts), so the time is
//     at least the time since the last receive (less the probe's round trip
//     and timer slack);
//   - with a probe out, the timer is armed for the interval.
func settingsFor(sys *inventory.TCPSysctls, own *KeepaliveSettings, s *inventory.Socket) kernelSettings {
	d := sys.OrDefaults()
	k := kernelSettings{time: d.KeepaliveTime, intvl: d.KeepaliveIntvl, probes: d.KeepaliveProbes, retries2: d.Retries2}
	if own != nil {
		k.perSocket = true
		if own.Time > 0 {
			k.time = own.Time
		}
		if own.Intvl > 0 {
			k.intvl = own.Intvl
		}
		if own.Probes > 0 {
			k.probes = own.Probes
		}
		k.userTimeout = max(own.UserTimeout, 0)
		return k
	}
	if s.Timer != inventory.TimerKeepalive {
		return k
	}
	exp := ms(s.Expires)
	if s.Retrans == 0 {
		k.time = max(k.time, exp, sinceReceive(s))
	} else {
		k.intvl = max(k.intvl, exp)
	}
	return k
}

// sinceReceive is how long ago the socket last received anything, data or
// ACK: what the kernel's keepalive measures its idle time from.
func sinceReceive(s *inventory.Socket) time.Duration {
	if !s.Info.Valid() {
		return 0
	}
	return min(ms(s.Info.LastDataRecv), ms(s.Info.LastAckRecv))
}

// evidence returns how long after a dead peer's last answer its kernel
// gives ghostd evidence or ends the connection itself, from the socket's
// settings alone (not from where its timer stands now, so that a socket does
// not flip in and out of being a suspect as the timer cycles): the first
// keepalive probe goes at time, one more every intvl; keepalive_failing
// shows once KeepaliveUnanswered are out, and then costs ghostd what an idle
// suspect costs after Idle (extra: the next scan and a probe round); the
// kernel aborts after probes unanswered probes, or with a user timeout at
// the first expiry past it with a probe out.
func (k *kernelSettings) evidence(extra time.Duration) time.Duration {
	var abort time.Duration
	if k.userTimeout > 0 {
		abort = max(k.time+k.intvl, k.userTimeout)
	} else {
		abort = k.time + time.Duration(k.probes)*k.intvl
	}
	if k.userTimeout > 0 || k.probes >= KeepaliveUnanswered {
		failing := k.time + time.Duration(KeepaliveUnanswered-1)*k.intvl + extra
		return min(failing, abort)
	}
	return abort
}

// leftToKernel reports whether a keepalive socket's own kernel finds a dead
// peer no later than ghostd would (cfg.Horizon): then it is no idle suspect
// and keepalive_failing takes over.
func (k *kernelSettings) leftToKernel(cfg *Config) bool {
	return k.evidence(cfg.Horizon-cfg.Idle) <= cfg.Horizon
}

// retransModel is the kernel's tcp_model_timeout: how long retransmissions
// take to reach boundary timeouts when each doubles from the minimum RTO
// (200 ms) up to the maximum (120 s). 15 (tcp_retries2's default) gives
// 924.6 s.
func retransModel(boundary int) time.Duration {
	const (
		rtoMin = 200 * time.Millisecond
		rtoMax = 120 * time.Second
		thresh = 9 // ilog2(rtoMax / rtoMin)
	)
	if boundary <= 0 {
		return 0
	}
	if boundary <= thresh {
		return time.Duration(2<<boundary-1) * rtoMin
	}
	return time.Duration(2<<thresh-1)*rtoMin + time.Duration(boundary-thresh)*rtoMax
}

// deadline works out when the kernel gives up on s's peer, from now (the
// observation).
func (k *kernelSettings) deadline(s *inventory.Socket) Deadline {
	switch timerKind(s) {
	case inventory.TimerKeepalive:
		return k.keepaliveDeadline(s)
	case inventory.TimerRetransmit:
		return k.retransDeadline(int(retransmits(s)), DeadlineRetransmit)
	case inventory.TimerZeroWindow:
		n := int(retransmits(s))
		if s.Timer == inventory.TimerZeroWindow {
			n = int(s.Retrans) // icsk_probes_out: zeroed by any answer
		}
		if n == 0 {
			return Deadline{Basis: DeadlineZeroWindow, Never: true}
		}
		return k.retransDeadline(n, DeadlineZeroWindow)
	case inventory.TimerTimeWait:
		return Deadline{Basis: DeadlineTimeWait, In: ms(s.Expires)}
	case inventory.TimerNone:
		switch s.State {
		case inventory.StateEstablished, inventory.StateCloseWait:
			return Deadline{Basis: DeadlineNone, Never: true}
		}
	}
	// A delayed-ACK timer hides whether keepalive is armed; other states
	// have their own timeouts.
	return Deadline{Basis: DeadlineUnknown}
}

// keepaliveDeadline: the next probe goes no earlier than the timer's expiry
// and the last receive plus the keepalive time; the kernel aborts when the
// timer next fires with probes unanswered probes out (or, with a user
// timeout, past it with one out).
func (k *kernelSettings) keepaliveDeadline(s *inventory.Socket) Deadline {
	exp, since := ms(s.Expires), sinceReceive(s)
	out := int(s.Retrans)
	d := Deadline{Basis: DeadlineKeepalive, LowerBound: true}
	first := max(exp, k.time-since) // when the first probe of this round goes
	if k.userTimeout > 0 {
		d.Basis = DeadlineUserTimeout
		if out == 0 {
			d.In = max(first+k.intvl, k.userTimeout-since)
		} else {
			d.In = max(exp, k.userTimeout-since)
		}
		return d
	}
	if out == 0 {
		d.In = first + time.Duration(k.probes)*k.intvl
	} else {
		d.In = exp + time.Duration(max(k.probes-out, 0))*k.intvl
	}
	return d
}

// retransDeadline approximates the time left before n unanswered
// retransmissions (or window probes) reach the kernel's limit: the user
// timeout where known, else tcp_retries2 in the kernel's backoff model. The
// kernel measures from the first retransmission with the real RTO, which
// tcp_info does not give, so this assumes the minimum RTO.
func (k *kernelSettings) retransDeadline(n int, basis string) Deadline {
	total := retransModel(k.retries2)
	if k.userTimeout > 0 {
		total, basis = k.userTimeout, DeadlineUserTimeout
	}
	return Deadline{Basis: basis, In: max(total-retransModel(n), 0)}
}

// public returns the settings as KeepaliveSettings.
func (k *kernelSettings) public() KeepaliveSettings {
	return KeepaliveSettings{Time: k.time, Intvl: k.intvl, Probes: k.probes, UserTimeout: k.userTimeout}
}

// KernelOf works out s's Kernel from its namespace's sysctls (SetSysctls)
// and its own settings (SetKeepalive), for a socket the tracker may not
// remember (an Entry of a remembered one already has it).
func (t *Tracker) KernelOf(s *inventory.Socket) Kernel {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sys inventory.TCPSysctls
	var own KeepaliveSettings
	ok := false
	if ns := t.nss[s.Netns]; ns != nil {
		sys = ns.sysctls
		own, ok = ns.ownSettings(s.Cookie)
	}
	return kernelOf(&sys, optional(&own, ok), s)
}

func kernelOf(sys *inventory.TCPSysctls, own *KeepaliveSettings, s *inventory.Socket) Kernel {
	k := settingsFor(sys, own, s)
	return Kernel{Keepalive: k.public(), PerSocket: k.perSocket, Retries2: k.retries2, Deadline: k.deadline(s)}
}

// SetSysctls tells the tracker the TCP sysctls of a namespace (from its
// scan; see inventory.Namespace.TCP), used for the observations that follow.
// A namespace never set uses the kernel's defaults.
func (t *Tracker) SetSysctls(netns uint64, s inventory.TCPSysctls) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.namespace(netns, true).sysctls = s
}

// SetKeepalive tells the tracker a socket's own keepalive settings (read by
// a BPF iterator, say); the observations that follow use them instead of the
// namespace's sysctls. They are forgotten when the socket has been missing
// from two complete dumps; a namespace the tracker has not observed is
// ignored. Settings that are all unset are not kept: the
// sysctls are then exact, and the tracker's guess starts from them.
func (t *Tracker) SetKeepalive(k inventory.Key, ka KeepaliveSettings) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.namespace(k.Netns, false)
	if ns == nil {
		return // a namespace no scan has shown: nothing would ever forget it
	}
	o := packOwn(ka)
	if o == (ownSettings{}) {
		if ns.own != nil {
			delete(ns.own, k.Cookie)
		}
		return
	}
	if ns.own == nil {
		ns.own = make(map[uint64]ownSettings)
	}
	o.gen = ns.gen
	ns.own[k.Cookie] = o
}

// ownSettings are a socket's own KeepaliveSettings, packed (16 bytes: a
// host of 200 000 Go connections keeps 200 000 of them), and the namespace
// gen at which the socket was last seen.
type ownSettings struct {
	timeMs, intvlMs, userTimeoutMs uint32
	probes                         uint8
	gen                            uint8
}

func clampMs(d time.Duration) uint32 {
	return uint32(min(max(d.Milliseconds(), 0), 1<<32-1))
}

func packOwn(ka KeepaliveSettings) ownSettings {
	return ownSettings{
		timeMs: clampMs(ka.Time), intvlMs: clampMs(ka.Intvl), userTimeoutMs: clampMs(ka.UserTimeout),
		probes: uint8(min(max(ka.Probes, 0), 255)),
	}
}

func (o ownSettings) settings() KeepaliveSettings {
	return KeepaliveSettings{Time: ms(o.timeMs), Intvl: ms(o.intvlMs), Probes: int(o.probes), UserTimeout: ms(o.userTimeoutMs)}
}

// ownSettings returns a socket's own settings, if known.
func (ns *namespace) ownSettings(cookie uint64) (KeepaliveSettings, bool) {
	if len(ns.own) == 0 {
		return KeepaliveSettings{}, false
	}
	o, ok := ns.own[cookie]
	return o.settings(), ok
}

// touchOwn marks a socket with own settings as seen in this dump, and
// returns its settings, if known.
func (ns *namespace) touchOwn(cookie uint64) (KeepaliveSettings, bool) {
	if len(ns.own) == 0 {
		return KeepaliveSettings{}, false
	}
	o, ok := ns.own[cookie]
	if ok && o.gen != ns.gen {
		o.gen = ns.gen
		ns.own[cookie] = o
	}
	return o.settings(), ok
}

// optional returns &v when ok, else nil.
func optional(v *KeepaliveSettings, ok bool) *KeepaliveSettings {
	if !ok {
		return nil
	}
	return v
}

// pruneOwn forgets the own settings of sockets missing from the last two
// dumps (called by EndNamespace before gen moves on).
func (ns *namespace) pruneOwn() {
	for c, o := range ns.own {
		if ns.gen-o.gen >= 2 { // not seen in this dump nor the previous one
			delete(ns.own, c)
		}
	}
}
