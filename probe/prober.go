package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

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
	// rules says whether a namespace routes by what probes cannot follow
	// (unfollowedRules); nil assumes not.
	rules func(nsPath string) (bool, error)

	cfgMu    sync.Mutex
	cfg      Config
	inflight chan struct{} // replaced by SetConfig; holders release to the one they took

	hosts  hostLimiter
	guards guardPool  // reset guards of the namespaces being probed (guard.go)
	hints  hintMemory // remote ports per address, for the host hint (hosthint.go)

	modeMu  sync.Mutex
	mode    Mode
	modeWhy string

	closed atomic.Bool
	natLog natLogOnce
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
		rules:    unfollowedRules,
		now:      time.Now,
		mono:     monotonic,
		cache:    newSeqCache(time.Now()),
		limiter:  rate.NewLimiter(rateLimit(cfg.Rate), cfg.Burst),
		inflight: make(chan struct{}, cfg.InFlight),
		mode:     InWindow,
		modeWhy:  "in_window: sequence numbers from the BPF TCP iterator",
	}
	if seq == nil {
		p.mode, p.modeWhy = Blind, "blind: no sequence reader"
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
			results[i] = unprobed(ErrClosed)
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

func unprobed(err error) Result {
	return Result{Verdict: Unprobed, Err: err}
}

// probeNamespace probes targets[idx...], which share the namespace ns.
func (p *Prober) probeNamespace(ctx context.Context, cfg *Config, inflight chan struct{}, ns string, targets []Target, idx []int, results []Result) {
	fail := func(err error) {
		for _, i := range idx {
			results[i] = unprobed(err)
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
	nat, natKnown := p.lookupNAT(pinned, targets, idx)
	routed := p.routeFollowed(pinned)
	if !routed && cfg.ResetLocal {
		// Probes that may reach another host with the peer's address must
		// not acknowledge RCV.NXT: that host's RST would reset a live socket.
		c := *cfg
		c.ResetLocal, cfg = false, &c
	}
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
	d := newDemux(conn, p.log)
	d.setNAT(nat)
	defer func() {
		drops, bad, err := d.close()
		if err != nil {
			p.log.Warn("probe: close sockets", "netns", ns, "err", err)
		}
		// Counted once, on the namespace's first result.
		results[idx[0]].CaptureDrops += drops
		results[idx[0]].CaptureBadChecksums += bad
	}()

	// states: each target's sequence state by index, for reprobeTranslated.
	states := make(map[int]*SeqState, len(idx))
	var w workers
	defer w.wait()
	tokens := 0 // rate tokens taken and not yet used
	for pos, i := range idx {
		t := targets[i]
		var st *SeqState
		if c, ok := known[t.Cookie]; ok {
			if c.gone {
				results[i] = unprobed(fmt.Errorf("%w (cookie %d)", ErrSocketGone, t.Cookie))
				continue
			}
			st = &c.st
		} else if seqs != nil {
			s, ok := seqs[t.Cookie]
			if !ok {
				results[i] = unprobed(fmt.Errorf("%w (cookie %d)", ErrSocketGone, t.Cookie))
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
				results[i] = unprobed(err)
				continue
			}
			tokens = n
		}
		tokens--
		select {
		case inflight <- struct{}{}:
		case <-ctx.Done():
			results[i] = unprobed(ctx.Err())
			continue
		}
		states[i] = st
		w.run(func() {
			defer func() { <-inflight }()
			results[i] = p.guarded(ctx, cfg, d, t, st)
		})
	}
	w.wait()
	p.reprobeTranslated(ctx, cfg, inflight, pinned, targets, idx, states, results)
	if !natKnown {
		doubt(targets, idx, results, UncertainNATUnknown, Silent)
	}
	if !routed {
		doubt(targets, idx, results, UncertainRouting, Silent, Unreachable, Reset)
	}
}

// doubt marks the confirmed results of a namespace round with one of
// verdicts uncertain for why, unless the socket's own kernel evidence
// backs them: the round could not rule out that an answer went unseen
// (UncertainNATUnknown) or that the probes took another path than the
// socket's own segments, maybe to another host with the peer's address
// (UncertainRouting).
func doubt(targets []Target, idx []int, results []Result, why string, verdicts ...Verdict) {
	for _, i := range idx {
		r := &results[i]
		if r.Confirmed && r.Uncertain == "" && slices.Contains(verdicts, r.Verdict) && !targets[i].KernelEvidence {
			r.Uncertain, r.Confirmed = why, false
		}
	}
}

// routeFollowed reports whether the probes of the namespace at ns take the
// route its sockets' own segments take, as far as policy routing can tell
// (unfollowedRules); a namespace whose rules cannot be read counts as not.
func (p *Prober) routeFollowed(ns string) bool {
	if p.rules == nil {
		return true
	}
	unfollowed, err := p.rules(ns)
	switch {
	case err != nil:
		if p.natLog.first("rules") {
			p.log.Warn("probe: cannot read the namespace's routing rules: silence there is uncertain (routing)", "netns", ns, "err", err)
		}
		return false
	case unfollowed:
		if p.natLog.first("rules-unfollowed") {
			p.log.Warn("probe: the namespace routes by ports, protocol or user (ip rule sport/dport/ipproto/uidrange), which probes cannot follow: silence there is uncertain (routing)", "netns", ns)
		}
		return false
	}
	return true
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
