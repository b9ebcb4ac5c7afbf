package app

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/config"
	"github.com/ghostd/ghostd/internal/engine"
	"github.com/ghostd/ghostd/inventory"
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

	// destroyOnce runs the SOCK_DESTROY self-test once per process: it
	// opens and destroys a connection of ghostd's own, which a reload must
	// not repeat.
	destroyOnce sync.Once
	destroyErr  error
}

// newParts builds the scanner, prober and engine for cfg. It explains once, in
// one line each, what the process's capabilities do not allow. daemon says
// whether scans repeat every cfg.Interval (`ghostd run`) or happen once.
func newParts(cfg config.Config, log *slog.Logger, all, daemon bool) (*parts, error) {
	sel, err := inventory.SelectNetns(cfg.Netns)
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	p := &parts{log: log, caps: CurrentCapabilities()}
	for _, m := range p.caps.Missing() {
		log.Warn("missing capability", "capability", m.Name, "effect", m.Effect)
	}
	if cfg.Probe.ResetGuard && cfg.Probe.Enabled && !p.caps.Has(capNetAdmin) {
		log.Error("probe.reset_guard needs CAP_NET_ADMIN: probing without the guard (RCV.NXT-1, strict firewalls may hide resets)")
		cfg.Probe.ResetGuard = false
	}
	p.scanner = inventory.NewScanner(log, inventory.ScannerOptions{Select: sel})
	p.owners = inventory.NewOwners("/proc")
	var prober engine.Prober
	if cfg.Probe.Enabled {
		p.prober = p.newProber(cfg)
		prober = p.prober
	}
	p.engine = engine.New(p.scanner, prober, p.owners, engineOptions(cfg, all, daemon))
	return p, nil
}

func (p *parts) newProber(cfg config.Config) *probe.Prober {
	var seq probe.SeqReader
	r, err := probe.NewIterReader()
	if err != nil {
		p.log.Warn("probing blind: random-sequence probes; a RST is evidence, silence alone is not", "reason", err)
	} else {
		p.seq = r
		seq = &keepaliveTap{SeqReader: r, sink: p.setKeepalive}
	}
	pr := probe.New(probeConfig(cfg), seq, p.log)
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
	errs = append(errs, p.scanner.Close())
	return errors.Join(errs...)
}

// engineOptions maps the configuration onto the engine.
func engineOptions(cfg config.Config, all, daemon bool) engine.Options {
	return engine.Options{
		Tracker:   trackerConfig(cfg, daemon),
		Backoff:   cfg.Probe.Backoff,
		Reconfirm: cfg.Probe.Reconfirm,
		All:       all,
	}
}

func trackerConfig(cfg config.Config, daemon bool) tracker.Config {
	tc := tracker.DefaultConfig()
	tc.Idle = cfg.Idle
	tc.CloseWait = cfg.CloseWait
	tc.Stall = cfg.Stall
	tc.FinWait2 = cfg.FinWait2
	tc.LastAck = cfg.LastAck
	tc.Horizon = horizon(cfg, daemon)
	return tc
}

// horizon is how long ghostd takes to confirm a dead idle peer after its
// last answer: the idle threshold, then (daemon) up to one scan interval
// until a scan sees it, then one probe round: every attempt but the last
// an interval apart, and the last one's timeout. 60 + 15 + 2 + 1 = 78 s on
// defaults. A one-shot scan has no interval to wait.
func horizon(cfg config.Config, daemon bool) time.Duration {
	pc := probeConfig(cfg)
	if pc.Attempts <= 0 || pc.Interval <= 0 || pc.Timeout <= 0 {
		d := probe.DefaultConfig()
		pc.Attempts, pc.Interval, pc.Timeout = cmp.Or(pc.Attempts, d.Attempts), cmp.Or(pc.Interval, d.Interval), cmp.Or(pc.Timeout, d.Timeout)
	}
	h := cfg.Idle + time.Duration(max(pc.Attempts-1, 0))*pc.Interval + pc.Timeout
	if daemon {
		h += cfg.Interval
	}
	return h
}

func probeConfig(cfg config.Config) probe.Config {
	pc := probe.DefaultConfig()
	pc.Attempts = cfg.Probe.Attempts
	pc.Interval = cfg.Probe.Interval
	pc.Rate = cfg.Probe.Rate
	pc.PerHost = cfg.Probe.PerHost
	pc.InFlight = cfg.Probe.InFlight
	pc.HostHint = cfg.Probe.HostHint
	pc.ResetLocal = cfg.Probe.ResetLocal
	pc.ResetGuard = cfg.Probe.ResetGuard
	return pc
}

// killPolicy maps the configuration onto the exporter's kill policy.
func killPolicy(cfg config.Config) (exporter.KillPolicy, error) {
	k := cfg.Kill
	p := exporter.DefaultKillPolicy()
	p.Enabled = k.Enabled
	p.Mode = exporter.KillMode(k.Mode)
	p.Verdicts = p.Verdicts[:0]
	for _, v := range k.Verdicts {
		p.Verdicts = append(p.Verdicts, probe.Verdict(v))
	}
	p.MinAge = k.MinAge
	p.Allow = rules(k.Allow)
	p.Deny = rules(k.Deny)
	p.PerMinute = k.PerMinute
	p.CloseWait = k.CloseWait
	p.KeepaliveIdle = k.KeepaliveIdle
	p.KeepaliveInterval = k.KeepaliveInterval
	p.KeepaliveCount = k.KeepaliveCount
	p.UserTimeout = k.UserTimeout
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("config: kill: %w", err)
	}
	return p, nil
}

func rules(rs []config.Rule) []exporter.Rule {
	out := make([]exporter.Rule, 0, len(rs))
	for _, r := range rs {
		out = append(out, exporter.Rule{CIDRs: r.CIDRs, Ports: r.Ports, Netns: r.Netns, Comms: r.Comms, Units: r.Units})
	}
	return out
}

// newKiller returns the killer for cfg; its policy may be disabled. A
// reload hands the policy to the same killer (Killer.SetPolicy), so its rate
// limiter, its per-socket failure backoff and what it learned about the
// kernel survive. Ghosts are re-probed through the engine right before a
// kill; with probing off no ghost is killed.
func (p *parts) newKiller(cfg config.Config, store *exporter.Store) (*exporter.Killer, error) {
	pol, err := killPolicy(cfg)
	if err != nil {
		return nil, err
	}
	p.checkKill(pol, store)
	k := exporter.NewKiller(pol, p.scanner, store, p.log, time.Now)
	if p.prober != nil {
		k.SetReprober(p.engine.Reprobe)
	}
	return k, nil
}

// destroyWorksOnce is destroyWorks, run once per process.
func (p *parts) destroyWorksOnce() error {
	p.destroyOnce.Do(func() { p.destroyErr = destroyWorks() })
	return p.destroyErr
}
