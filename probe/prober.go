package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Config bounds and shapes probing. Zero fields take DefaultConfig's values.
type Config struct {
	// Attempts is how many probes a silent peer gets before the verdict.
	Attempts int
	// Interval spaces the attempts (jittered ±20 %, never below MinInterval:
	// Linux answers one out-of-window segment per socket per 500 ms).
	Interval time.Duration
	// Timeout is how long to wait for an answer after the last attempt.
	Timeout time.Duration
	// Rate caps probes per second over every namespace; math.Inf(1) lifts the cap.
	Rate float64
	// Burst is how many probes may leave at once under Rate.
	Burst int
	// PerHost caps concurrent probes to one peer host.
	PerHost int
	// InFlight caps targets being probed at once over every namespace.
	InFlight int
	// HostHint sends one ICMP echo to a silent peer's host and fills
	// Result.HostReachable.
	HostHint bool
	// ResetLocal makes in-window probes acknowledge RCV.NXT, so a dead peer's
	// RST is acceptable to the local socket, which the kernel then resets.
	// Off by default: probes acknowledge RCV.NXT−1 and the RST is ignored
	// locally (it still reaches ghostd's capture).
	ResetLocal bool
	// ResetGuard makes in-window probes acknowledge RCV.NXT behind a
	// netfilter rule that drops the answering RST before the local socket
	// sees it (guard.go): a strict firewall then lets a dead peer's RST
	// through and the local socket stays untouched. Needs CAP_NET_ADMIN;
	// without it probes acknowledge RCV.NXT−1.
	ResetGuard bool
	// StillExists, when set, is asked after a reset verdict whether the local
	// socket survived, to fill Result.ClosedLocal. When nil, ClosedLocal is
	// ResetLocal for in-window resets (what the kernel does with an in-window
	// RST) and false otherwise.
	StillExists func(Target) bool
	// Now stamps sends and replies for RTTs; nil means time.Now.
	Now func() time.Time
}

// MinInterval is the smallest spacing between two probes of one connection.
const MinInterval = 600 * time.Millisecond

// DefaultConfig returns the defaults: 3 attempts 1 s apart, 1 s final wait,
// 200 probes/s, 16 concurrent probes per host, 256 targets in flight.
func DefaultConfig() Config {
	return Config{
		Attempts: 3,
		Interval: time.Second,
		Timeout:  time.Second,
		Rate:     200,
		Burst:    10,
		PerHost:  16,
		InFlight: 256,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Attempts <= 0 {
		c.Attempts = d.Attempts
	}
	if c.Interval <= 0 {
		c.Interval = d.Interval
	}
	c.Interval = max(c.Interval, MinInterval)
	if c.Timeout <= 0 {
		c.Timeout = d.Timeout
	}
	if c.Rate <= 0 || math.IsNaN(c.Rate) {
		c.Rate = d.Rate
	}
	if c.Burst <= 0 {
		c.Burst = d.Burst
	}
	if c.PerHost <= 0 {
		c.PerHost = d.PerHost
	}
	if c.InFlight <= 0 {
		c.InFlight = d.InFlight
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Stats are cumulative counters since New.
type Stats struct {
	Sent    uint64            // probes sent
	Echoes  uint64            // ICMP echoes sent for HostHint
	Replies map[string]uint64 // matched replies by kind: "ack", "rst", "icmp"
	Errors  uint64            // targets left unprobed by an error
	// NAT counts probes sent on connections translated in their own
	// namespace, whose answers were watched on the conntrack reply tuple.
	NAT uint64
}

// Errors a Result may carry.
var (
	// ErrSocketGone means the sequence reader no longer found the socket: it
	// closed since the inventory saw it, and is not probed.
	ErrSocketGone = errors.New("probe: socket no longer exists")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("probe: prober closed")
	// ErrNetnsChanged means a namespace path now names another namespace
	// than the inventory's (a reused PID, a recreated /run/netns name): its
	// targets are not probed.
	ErrNetnsChanged = errors.New("probe: network namespace changed since the scan")
)

// Prober probes suspect connections within its bounds. Its methods are safe
// for concurrent use.
//
// One sequence read walks every TCP socket of the host, however few are
// wanted: ReadAhead reads many targets' states in one pass and caches them,
// and ProbeAll uses a cached state instead of reading when no data moved on
// the socket since (Target.QuietSince).
type Prober struct {
	seq     SeqReader
	log     *slog.Logger
	open    func(nsPath string, ports []uint16) (rawConn, error)
	pin     func(nsPath string, inode uint64) (string, func(), error) // pinNetns
	now     func() time.Time                                          // the read-ahead cache's clock
	mono    func() (time.Duration, error)                             // CLOCK_MONOTONIC: the kernel's TCP timestamp clock
	limiter *rate.Limiter
	cache   seqCache

	// nat looks up how connections are translated in their namespace
	// (lookupNAT); nil looks nothing up.
	nat func(nsPath string, conns []flowKey) ([]natFlow, error)

	cfgMu    sync.Mutex
	cfg      Config
	inflight chan struct{} // replaced by SetConfig; holders release to the one they took

	hosts  hostLimiter
	guards guardPool  // reset guards of the namespaces being probed (guard.go)
	hints  hintMemory // remote ports per address, for the host hint (hosthint.go)

	modeMu  sync.Mutex
	mode    Mode
	modeWhy string

	sent, echoes, errs, acks, rsts, icmps atomic.Uint64
	natSent                               atomic.Uint64
	closed                                atomic.Bool
	natLog                                natLogOnce
}

// seqUnavailable is a SeqReader that always fails with its error.
type seqUnavailable struct{ err error }

func (s seqUnavailable) ReadSeq(context.Context, string, []uint64) (map[uint64]SeqState, error) {
	return nil, s.err
}

// SeqUnavailable returns a SeqReader that always fails with err (wrapped in
// ErrNoSeq): pass it to New when NewIterReader failed, so Mode says why.
func SeqUnavailable(err error) SeqReader {
	if !errors.Is(err, ErrNoSeq) {
		err = fmt.Errorf("%w: %w", ErrNoSeq, err)
	}
	return seqUnavailable{err}
}

// New returns a Prober. A nil seq means blind probes; log may be nil.
func New(cfg Config, seq SeqReader, log *slog.Logger) *Prober {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Prober{
		cfg:      cfg,
		seq:      seq,
		log:      log,
		open:     openRawConn,
		pin:      pinNetns,
		nat:      lookupNAT,
		now:      time.Now,
		mono:     monotonic,
		cache:    newSeqCache(time.Now()),
		limiter:  rate.NewLimiter(rateLimit(cfg.Rate), cfg.Burst),
		inflight: make(chan struct{}, cfg.InFlight),
		mode:     InWindow,
		modeWhy:  "in_window: sequence numbers from the BPF TCP iterator",
	}
	switch s := seq.(type) {
	case nil:
		p.mode, p.modeWhy = Blind, "blind: no sequence reader"
	case seqUnavailable:
		p.mode, p.modeWhy = Blind, "blind: "+s.err.Error()
	}
	return p
}

// SetConfig applies a new configuration to probes that start afterwards
// (the rate limit applies at once). While probes admitted under the old
// in-flight and per-host caps finish, up to both caps' worth may run.
func (p *Prober) SetConfig(cfg Config) {
	cfg = cfg.withDefaults()
	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	if cfg.InFlight != p.cfg.InFlight {
		p.inflight = make(chan struct{}, cfg.InFlight)
	}
	p.cfg = cfg
	p.limiter.SetLimit(rateLimit(cfg.Rate))
	p.limiter.SetBurst(cfg.Burst)
}

func (p *Prober) config() (Config, chan struct{}) {
	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	return p.cfg, p.inflight
}

// Mode reports how probes choose their sequence numbers, and why. It turns
// to Blind for good when the reader reports ErrNoSeq.
func (p *Prober) Mode() (Mode, string) {
	p.modeMu.Lock()
	defer p.modeMu.Unlock()
	return p.mode, p.modeWhy
}

func (p *Prober) goBlind(err error) {
	p.modeMu.Lock()
	defer p.modeMu.Unlock()
	if p.mode != Blind {
		p.mode, p.modeWhy = Blind, "blind: "+err.Error()
		p.log.Warn("probe: falling back to blind probes", "err", err)
		p.cache.clear()
	}
}

// Stats returns the cumulative counters.
func (p *Prober) Stats() Stats {
	return Stats{
		Sent:   p.sent.Load(),
		Echoes: p.echoes.Load(),
		Errors: p.errs.Load(),
		NAT:    p.natSent.Load(),
		Replies: map[string]uint64{
			ReplyACK.String():         p.acks.Load(),
			ReplyRST.String():         p.rsts.Load(),
			ReplyUnreachable.String(): p.icmps.Load(),
		},
	}
}

// Close makes later probes fail with ErrClosed. Probes in progress finish;
// every socket a probe opens is closed when its ProbeAll returns.
func (p *Prober) Close() error {
	p.closed.Store(true)
	p.cache.clear()
	p.guards.closeAll()
	return nil
}

// Probe probes one connection; the error is the one left in Result.Err.
func (p *Prober) Probe(ctx context.Context, t Target) (Result, error) {
	r := p.ProbeAll(ctx, []Target{t})[0]
	return r, r.Err
}

// ProbeAll probes every target within the Prober's bounds and returns their
// results in input order. Targets are grouped by namespace: one sequence
// read and one set of sockets per namespace; targets whose state ReadAhead
// cached use it up instead, and a namespace whose targets all have one is not
// read at all. A target that could not be
// probed has verdict Unprobed and Err set. Cancelling ctx stops every probe
// promptly; their results are Unprobed with ctx's error.
func (p *Prober) ProbeAll(ctx context.Context, targets []Target) []Result {
	results := make([]Result, len(targets))
	if p.closed.Load() {
		for i := range results {
			results[i] = p.unprobed(ErrClosed)
		}
		return results
	}
	groups := make(map[string][]int)
	var order []string
	for i, t := range targets {
		if _, ok := groups[t.NetnsPath]; !ok {
			order = append(order, t.NetnsPath)
		}
		groups[t.NetnsPath] = append(groups[t.NetnsPath], i)
	}
	cfg, inflight := p.config()
	var wg sync.WaitGroup
	for _, ns := range order {
		wg.Go(func() { p.probeNamespace(ctx, &cfg, inflight, ns, targets, groups[ns], results) })
	}
	wg.Wait()
	return results
}

func (p *Prober) unprobed(err error) Result {
	p.errs.Add(1)
	return Result{Verdict: Unprobed, Err: err}
}

// probeNamespace probes targets[idx...], which share the namespace ns.
func (p *Prober) probeNamespace(ctx context.Context, cfg *Config, inflight chan struct{}, ns string, targets []Target, idx []int, results []Result) {
	fail := func(err error) {
		for _, i := range idx {
			results[i] = p.unprobed(err)
		}
	}
	// Everything below enters the namespace through pinned, the very
	// namespace the inventory saw, never through a path that may have
	// come to name another since.
	pinned, release, err := p.pin(ns, targets[idx[0]].NetnsInode)
	if err != nil {
		fail(err)
		return
	}
	defer release()
	defer p.guards.hold(cfg.ResetGuard, targets[idx[0]].NetnsInode, pinned, p.log)()
	known, rest := p.takeCached(ns, targets, idx)
	var seqs map[uint64]SeqState // nil: the rest go blind
	if len(rest) > 0 {
		if seqs, err = p.readSeq(ctx, pinned, targets, rest); err != nil {
			fail(err)
			return
		}
	}
	nat := p.lookupNAT(pinned, targets, idx)
	ports := make([]uint16, 0, len(idx)+len(nat))
	for _, i := range idx {
		ports = append(ports, targets[i].Local.Port())
	}
	for _, n := range nat {
		ports = append(ports, n.key.local.Port()) // where a translated answer goes
	}
	conn, err := p.open(pinned, ports)
	if err != nil {
		fail(fmt.Errorf("probe: netns %q: %w", ns, err))
		return
	}
	e := newEngine(conn, p.log)
	e.setNAT(nat)
	defer func() {
		drops, bad, err := e.close()
		if err != nil {
			p.log.Warn("probe: close sockets", "netns", ns, "err", err)
		}
		// Counted once, on the namespace's first result.
		results[idx[0]].CaptureDrops += drops
		results[idx[0]].CaptureBadChecksums += bad
	}()

	// states: each target's sequence state by index, for reprobeTranslated.
	states := make(map[int]*SeqState, len(idx))
	var wg sync.WaitGroup
	tokens := 0 // rate tokens taken and not yet used
	for pos, i := range idx {
		t := targets[i]
		var st *SeqState
		if c, ok := known[t.Cookie]; ok {
			if c.gone {
				results[i] = p.unprobed(fmt.Errorf("%w (cookie %d)", ErrSocketGone, t.Cookie))
				continue
			}
			st = &c.st
		} else if seqs != nil {
			s, ok := seqs[t.Cookie]
			if !ok {
				results[i] = p.unprobed(fmt.Errorf("%w (cookie %d)", ErrSocketGone, t.Cookie))
				continue
			}
			st = &s
		}
		if why := st.Unprobeable(); why != "" {
			// Not an error: the socket is what it is. No token, no probe.
			results[i] = Result{Verdict: Unprobed, Mode: InWindow, Unprobeable: why}
			continue
		}
		// The first probe's token is taken here, before the goroutine
		// starts: at the rate cap, a chunk's goroutines would otherwise all
		// sleep in the limiter, each with its own timer, and waking them
		// cost more CPU than the probes (measured: ~40 % of it). Tokens are
		// taken a burst at a time: the probes of a burst leave together and
		// their replies come back together, so one wake-up serves many
		// probes, and the rate and burst bound the wire as before.
		if tokens == 0 {
			n := max(1, min(cfg.Burst, p.limiter.Burst(), len(idx)-pos))
			if err := p.limiter.WaitN(ctx, n); err != nil {
				results[i] = p.unprobed(err)
				continue
			}
			tokens = n
		}
		tokens--
		select {
		case inflight <- struct{}{}:
		case <-ctx.Done():
			results[i] = p.unprobed(ctx.Err())
			continue
		}
		states[i] = st
		wg.Go(func() {
			defer func() { <-inflight }()
			results[i] = p.guarded(ctx, cfg, e, t, st)
		})
	}
	wg.Wait()
	p.reprobeTranslated(ctx, cfg, inflight, pinned, targets, idx, states, results)
}

// readSeq returns the group's sequence state, nil for blind probes.
func (p *Prober) readSeq(ctx context.Context, ns string, targets []Target, idx []int) (map[uint64]SeqState, error) {
	if p.seq == nil {
		return nil, nil
	}
	if m, _ := p.Mode(); m == Blind {
		return nil, nil
	}
	cookies := make([]uint64, 0, len(idx))
	for _, i := range idx {
		cookies = append(cookies, targets[i].Cookie)
	}
	seqs, err := p.safeReadSeq(ctx, ns, cookies)
	switch {
	case err == nil:
		return seqs, nil
	case errors.Is(err, ErrNoSeq):
		p.goBlind(err)
		return nil, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	// A namespace the reader cannot read this round is probed blind rather
	// than not at all: a blind RST is still evidence.
	p.log.Warn("probe: sequence numbers unavailable for this namespace; probing blind", "netns", ns, "err", err)
	return nil, nil
}

// safeReadSeq calls the reader, turning a panic into an error.
func (p *Prober) safeReadSeq(ctx context.Context, ns string, cookies []uint64) (m map[uint64]SeqState, err error) {
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("probe: sequence reader panic", "netns", ns, "panic", v, "stack", string(debug.Stack()))
			m, err = nil, fmt.Errorf("probe: sequence reader panic: %v", v)
		}
	}()
	return p.seq.ReadSeq(ctx, ns, cookies)
}

// guarded probes one target under its host's concurrency cap, turning a
// panic into an error.
func (p *Prober) guarded(ctx context.Context, cfg *Config, e *engine, t Target, st *SeqState) (res Result) {
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("probe: panic", "remote", t.Remote, "panic", v, "stack", string(debug.Stack()))
			res = p.unprobed(fmt.Errorf("probe: panic probing %s: %v", t.Remote, v))
		}
	}()
	host := t.Remote.Addr().Unmap()
	release, err := p.hosts.acquire(ctx, host, cfg.PerHost)
	if err != nil {
		return p.unprobed(err)
	}
	defer release()
	res = p.probeOne(ctx, cfg, e, t, st)
	if res.NAT != "" {
		p.natSent.Add(uint64(res.Sent))
	}
	return res
}

// numbers returns a probe's sequence, acknowledgement and window fields.
func (p *Prober) numbers(cfg *Config, st *SeqState) (seq, ack uint32, win uint16) {
	if st == nil {
		return rand.Uint32(), rand.Uint32(), 512
	}
	seq = st.SndUna - 1 // keepalive-shaped: one byte the peer already has
	ack = st.RcvNxt - 1 // outside our own window: the peer's RST cannot reset us
	if cfg.ResetLocal {
		ack = st.RcvNxt
	}
	w := st.RcvWnd >> min(st.RcvWScale, 14)
	return seq, ack, uint16(min(w, math.MaxUint16))
}

// segment appends one probe for t to buf and returns it with the numbers a
// reply is matched against (accept.go). With the socket's state it is the segment the socket's own
// keepalive would send: in-window numbers, the socket's TOS / traffic class
// and flow label, and the timestamp option when the connection negotiated
// it (TSval on the socket's clock, TSecr = TS.Recent), so a peer that checks
// PAWS (RFC 7323) accepts it.
func (p *Prober) segment(buf []byte, cfg *Config, t Target, st *SeqState, tos uint8) ([]byte, sentProbe, error) {
	seq, ack, win := p.numbers(cfg, st)
	seg := Segment{
		Src: netip.AddrPortFrom(t.Local.Addr().Unmap(), t.Local.Port()), Dst: netip.AddrPortFrom(t.Remote.Addr().Unmap(), t.Remote.Port()),
		Seq: seq, Ack: ack, Flags: FlagACK, Window: win, ID: uint16(rand.Uint32()), TOS: tos,
	}
	sent := sentProbe{seq: seq, ack: ack, id: seg.ID}
	if !t.Remote.Addr().Unmap().Is4() {
		sent.id = 0 // IPv6 has no identification field
	}
	if st != nil {
		seg.FlowLabel = st.FlowLabel
		if st.TSOK {
			now, err := p.mono()
			if err != nil {
				return nil, sent, err
			}
			seg.TS = &Timestamp{Val: tsVal(st, now), Ecr: st.TSRecent}
		}
	}
	pkt, err := AppendSegment(buf, seg)
	return pkt, sent, err
}

// tsVal is the TSval the socket would send at now (CLOCK_MONOTONIC): Linux
// stamps segments with its TCP clock, that monotonic clock in milliseconds
// (microseconds for tcp_usec_ts sockets), plus the socket's random offset
// (tcp_skb_timestamp_ts in include/net/tcp.h).
func tsVal(st *SeqState, now time.Duration) uint32 {
	unit := time.Millisecond
	if st.USecTS {
		unit = time.Microsecond
	}
	return uint32(now/unit) + st.TSOffset
}

func (p *Prober) probeOne(ctx context.Context, cfg *Config, e *engine, t Target, st *SeqState) (out Result) {
	res := Result{Verdict: Unprobed, Mode: Blind}
	if st != nil {
		res.Mode = InWindow
	}
	local, remote := t.Local.Addr().Unmap(), t.Remote.Addr().Unmap()
	// The engine queues only what accept takes (accept.go); the rest is
	// counted on the result.
	w, stop := e.watch(newFlowKey(t.Local, t.Remote), st)
	defer stop()
	res.NAT = e.natKind(t) // NAT in the namespace: see engine.setNAT
	if cfg.HostHint {
		p.hints.observe(t.Remote, cfg.Now()) // hosthint.go
	}
	// The reset guard (guard.go): acknowledge RCV.NXT behind it.
	if disarm, ok := p.arm(cfg, t, st, res.NAT); ok {
		defer disarm()
		guardedCfg := *cfg
		guardedCfg.ResetLocal, cfg, res.Guarded = true, &guardedCfg, true
	}
	defer func() { out.Rejected = w.rejects() }()
	replies := w.ch
	// Capture losses and bad checksums not yet polled count against this
	// probe: the safe side.
	lostBefore, badBefore := e.lost.Load(), e.badChecksum.Load()

	buf := make([]byte, 0, IPv6Size+TCPMinSize+TCPTimestampSize)
	rt := routeOf(st, local.Is4())
	var lastSent time.Time
	unreachable := false
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for attempt := 0; attempt < cfg.Attempts; attempt++ {
		if attempt > 0 { // probeNamespace took the first attempt's token
			if err := p.limiter.Wait(ctx); err != nil {
				return p.interrupted(res, err)
			}
		}
		pkt, sp, err := p.segment(buf[:0], cfg, t, st, rt.tos)
		if err != nil {
			return p.unprobed(fmt.Errorf("probe: %s→%s: %w", t.Local, t.Remote, err))
		}
		w.sent(sp)
		lastSent = cfg.Now()
		if err := e.send(pkt, remote, rt); err != nil {
			return p.unprobed(err)
		}
		res.Sent++
		p.sent.Add(1)

		wait := jitter(cfg.Interval)
		if attempt == cfg.Attempts-1 {
			wait = cfg.Timeout
		}
		timer.Reset(wait)
	waiting:
		for {
			select {
			case <-ctx.Done():
				return p.interrupted(res, ctx.Err())
			case <-timer.C:
				break waiting
			case r := <-replies:
				switch r.Kind {
				case ReplyACK:
					p.acks.Add(1)
					p.replied(cfg, &res, lastSent)
					res.Verdict, res.Confirmed = Alive, true
					return res
				case ReplyRST:
					p.rsts.Add(1)
					p.replied(cfg, &res, lastSent)
					res.Verdict, res.Confirmed = Reset, true
					res.ClosedLocal = p.closedLocal(cfg, t, st, r) && (!res.Guarded || cfg.StillExists != nil)
					return res
				case ReplyUnreachable:
					// Keep probing: an ACK later still proves the peer alive.
					p.icmps.Add(1)
					p.replied(cfg, &res, lastSent)
					unreachable = true
				}
			}
		}
	}
	res.Verdict = Silent
	if unreachable {
		res.Verdict = Unreachable
	}
	// Every attempt went out unanswered. Blind silence proves nothing by
	// itself: stateful middleboxes drop out-of-window segments. Nor does
	// silence amid packets for the 4-tuple that answer none of our probes,
	// or while the capture lost datagrams: the answer may have been lost.
	// An ICMP error amid forged packets is no better: on IPv6 (no IP id)
	// an on-path forger can quote a probe exactly, and many such errors
	// could crowd out the real answer.
	if res.Verdict == Silent || res.Verdict == Unreachable {
		lost := e.pollCapture() > lostBefore
		switch {
		case w.rejects().Total() > 0, e.badChecksum.Load() > badBefore:
			res.Uncertain = UncertainInterference
		case lost:
			res.Uncertain = UncertainCaptureLost
		}
	}
	res.Confirmed = unreachable && res.Uncertain == "" || res.Mode == InWindow && res.Uncertain == "" || t.KernelEvidence
	if cfg.HostHint && res.Verdict == Silent {
		p.hint(ctx, cfg, e, t, &res, route{mark: rt.mark, ifindex: rt.ifindex}) // hosthint.go
	}
	return res
}

// interrupted ends a probe cut short by ctx: nothing is concluded.
func (p *Prober) interrupted(res Result, err error) Result {
	p.errs.Add(1)
	res.Verdict, res.Confirmed, res.Err = Unprobed, false, err
	return res
}

func (p *Prober) replied(cfg *Config, res *Result, lastSent time.Time) {
	if res.Replies == 0 {
		res.RTT = max(cfg.Now().Sub(lastSent), 1)
	}
	res.Replies++
}

func (p *Prober) closedLocal(cfg *Config, t Target, st *SeqState, r Reply) bool {
	if cfg.StillExists != nil {
		return !cfg.StillExists(t)
	}
	// The kernel accepts a RST whose sequence number is exactly RCV.NXT.
	return st != nil && r.Seq == st.RcvNxt
}

// echo sends one ICMP echo to the peer's host and waits Timeout for the reply.
func (p *Prober) echo(ctx context.Context, cfg *Config, e *engine, local, remote netip.Addr, rt route) (bool, error) {
	if err := p.limiter.Wait(ctx); err != nil {
		return false, err
	}
	id, seq := uint16(rand.Uint32()), uint16(rand.Uint32())
	pkt, err := AppendEcho(nil, local, remote, id, seq)
	if err != nil {
		return false, err
	}
	ch, stop := e.watchEcho(echoKey{remote, id})
	defer stop()
	if err := e.send(pkt, remote, rt); err != nil {
		return false, err
	}
	p.echoes.Add(1)
	timer := time.NewTimer(cfg.Timeout)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-timer.C:
			return false, nil
		case r := <-ch:
			if r.EchoSeq == seq {
				return true, nil
			}
		}
	}
}
