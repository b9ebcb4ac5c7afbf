package app

import (
	"cmp"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/bpfload"
	"github.com/ghostd/ghostd/internal/config"
	"github.com/ghostd/ghostd/internal/engine"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/kill"
	"github.com/ghostd/ghostd/podinfo"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// parts are the long-lived pieces a command wires together.
type parts struct {
	log     *slog.Logger
	scanner *inventory.Scanner
	owners  *inventory.Owners
	seq     *probe.IterReader // nil in blind mode
	prober  *probe.Prober     // nil when probing is off
	engine  *engine.Engine
	caps    Capabilities
	pods    *podinfo.Resolver // nil when no runtime is asked

	// destroyOnce runs the SOCK_DESTROY self-test once per process: it
	// opens and destroys a connection of ghostd's own, which a reload must
	// not repeat.
	destroyOnce sync.Once
	destroyErr  error
}

// listing is what a scan lists beyond the suspects and their processes.
type listing struct {
	all       bool // every socket (scan --all)
	processes bool // with all, every socket's process (scan --processes)
}

// newParts builds the scanner, prober and engine for cfg. It explains once, in
// one line each, what the process's capabilities do not allow. daemon says
// whether scans repeat every cfg.Interval (`ghostd run`) or happen once.
func newParts(cfg config.Config, log *slog.Logger, list listing, daemon bool) (*parts, error) {
	sel, err := inventory.SelectNetns(cfg.Netns)
	if err != nil {
		return nil, err // "inventory: --netns X: ...", said once
	}
	p := &parts{log: log, caps: CurrentCapabilities()}
	for _, m := range p.caps.Missing() {
		log.Warn("missing capability", "capability", m.Name, "effect", m.Effect)
	}
	if cfg.Probe.ResetGuard && cfg.Probe.Enabled && !p.caps.Has(capNetAdmin) {
		log.Error("probe.reset_guard needs CAP_NET_ADMIN: probing without the guard (RCV.NXT-1, strict firewalls may hide resets)")
		cfg.Probe.ResetGuard = false
	}
	opts := inventory.ScannerOptions{Select: sel, OneWalk: daemon}
	if p.pods, err = newPods(cfg, log); err != nil {
		return nil, err
	}
	p.owners = inventory.NewOwners("/proc")
	if err := p.owners.UseIterator(log); err != nil {
		log.Info("owners: reading /proc/PID/fd to find sockets' processes", "reason", err)
	}
	var owners engine.Owners = p.owners
	if p.pods != nil {
		opts.Name = p.pods.Name
		owners = p.pods.Owners(owners)
	}
	p.scanner = inventory.NewScanner(log, opts)
	var prober engine.Prober
	if cfg.Probe.Enabled {
		p.prober = p.newProber(cfg)
		prober = p.prober
	}
	p.engine = engine.New(p.scanner, prober, owners, engineOptions(cfg, list, daemon))
	bpfload.Release() // what start loads is loaded: the kernel's BTF is garbage
	return p, nil
}

// newPods returns the resolver that names pods and containers after the
// container runtime, or nil when the configuration asks no runtime.
func newPods(cfg config.Config, log *slog.Logger) (*podinfo.Resolver, error) {
	if cfg.Runtime.None() {
		return nil, nil
	}
	return podinfo.New(log, podinfo.Options{Endpoints: cfg.Runtime.Endpoints, Every: cfg.Runtime.Refresh}) // "podinfo: ..."
}

func (p *parts) newProber(cfg config.Config) *probe.Prober {
	var seq probe.SeqReader
	// The iterator loads at the first probe (a scan with nothing to probe
	// never pays for it) when it has the privileges; without them, now,
	// which says at start why probes are blind.
	load := probe.NewIterReader
	if p.caps.Has(capSysAdmin) || p.caps.Has(capBPF) && p.caps.Has(capPerfmon) {
		load = probe.NewIterReaderOnUse
	}
	r, err := load()
	if err != nil {
		p.log.Warn("probing blind: random-sequence probes; a RST is evidence, silence alone is not", "reason", err)
	} else {
		p.seq = r
		seq = &keepaliveTap{SeqReader: r, sink: p.setKeepalive}
	}
	pr := probe.New(cfg.Probe, seq, p.log)
	mode, why := pr.Mode()
	p.log.Info("probe mode", "mode", mode, "why", why)
	return pr
}

// setKeepalive passes a socket's own keepalive settings to the engine (the
// prober reads them before the engine exists only in `ghostd probe`).
func (p *parts) setKeepalive(k inventory.Key, ka tracker.KeepaliveSettings) {
	if p.engine != nil {
		p.engine.SetKeepalive(k, ka)
	}
}

func (p *parts) Close() error {
	var errs []error
	if p.prober != nil {
		errs = append(errs, p.prober.Close())
	}
	if p.seq != nil {
		errs = append(errs, p.seq.Close())
	}
	errs = append(errs, p.scanner.Close(), p.owners.Close())
	if p.pods != nil {
		errs = append(errs, p.pods.Close())
	}
	return errors.Join(errs...)
}

// engineOptions maps the configuration onto the engine.
func engineOptions(cfg config.Config, list listing, daemon bool) engine.Options {
	return engine.Options{
		Tracker:   trackerConfig(cfg, daemon),
		Backoff:   cfg.Probe.Backoff,
		Reconfirm: cfg.Probe.Reconfirm,
		All:       list.all,
		Processes: list.processes,
	}
}

// trackerConfig is the configured thresholds with the horizon only the
// whole configuration can tell.
func trackerConfig(cfg config.Config, daemon bool) tracker.Config {
	tc := cfg.Thresholds
	tc.Horizon = horizon(cfg, daemon)
	return tc
}

// horizon is how long ghostd takes to confirm a dead idle peer after its
// last answer: the idle threshold, then (daemon) up to one scan interval
// until a scan sees it, then one probe round: every attempt but the last
// an interval apart, and the last one's timeout. 60 + 15 + 2 + 1 = 78 s on
// defaults. A one-shot scan has no interval to wait.
func horizon(cfg config.Config, daemon bool) time.Duration {
	pc, d := cfg.Probe, probe.DefaultConfig()
	attempts, interval, timeout := cmp.Or(max(pc.Attempts, 0), d.Attempts), cmp.Or(max(pc.Interval, 0), d.Interval), cmp.Or(max(pc.Timeout, 0), d.Timeout)
	h := cfg.Thresholds.Idle + time.Duration(attempts-1)*interval + timeout
	if daemon {
		h += cfg.Interval
	}
	return h
}

// newKiller returns the killer for cfg's validated policy, which may be disabled. A
// reload hands the policy to the same killer (Killer.SetPolicy), so its rate
// limiter, its per-socket failure backoff and what it learned about the
// kernel survive. Ghosts are re-probed through the engine right before a
// kill; with probing off no ghost is killed.
func (p *parts) newKiller(cfg config.Config, store *exporter.Store) *kill.Killer {
	pol := cfg.Kill
	p.checkKill(pol, store)
	var rep kill.Reporter // a nil *Store must not become a non-nil Reporter
	if store != nil {
		rep = store
	}
	k := kill.New(pol, p.scanner, rep, p.log, time.Now)
	if p.prober != nil {
		k.SetReprober(p.engine.Reprobe)
	}
	return k
}

// destroyWorksOnce is destroyWorks, run once per process.
func (p *parts) destroyWorksOnce() error {
	p.destroyOnce.Do(func() { p.destroyErr = destroyWorks() })
	return p.destroyErr
}
