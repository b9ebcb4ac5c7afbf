package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/config"
	"github.com/ghostd/ghostd/internal/engine"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/kill"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/systemd"
)

// runDaemon implements `ghostd run`.
func runDaemon(ctx context.Context, args []string, stdout, stderr io.Writer, b Build) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	f := config.RegisterFlags(fs, false)
	pprofOn := fs.Bool("web.enable-pprof", false, "serve Go's /debug/pprof/ profiles on the web listener (for debugging ghostd itself)")
	if code, ok := parseFlags(fs, args, stderr, true); !ok {
		return code
	}
	cfg, err := loadConfig(f)
	if err == nil && cfg.Web.ConfigFile != "" {
		if werr := web.Validate(cfg.Web.ConfigFile); werr != nil {
			err = fmt.Errorf("config: web.config_file %s: %w", cfg.Web.ConfigFile, werr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "ghostd run: %v\n", err)
		return ExitUsage
	}
	if f.Check {
		fmt.Fprintf(stdout, "ghostd: configuration %s is valid\n", f.ConfigFile)
		return ExitOK
	}
	log := newLogger(stderr, cfg.Log)
	d, err := newDaemon(cfg, f, log, b)
	if d != nil {
		d.pprof = *pprofOn
	}
	if err != nil {
		log.Error("cannot start", "err", err)
		return ExitFailure
	}
	if err := d.run(ctx); err != nil {
		log.Error("stopped", "err", err)
		return ExitFailure
	}
	return ExitOK
}

// daemon is `ghostd run`: a scan loop, a probe worker and the HTTP server,
// supervised under one errgroup.
type daemon struct {
	log   *slog.Logger
	flags *config.Flags
	parts *parts
	store *exporter.Store

	mu       sync.Mutex
	cfg      config.Config
	killer   *kill.Killer
	pipeline *engine.Pipeline

	pprof     bool
	probeErrs probeErrors
	probeQ    chan []probe.Target // latest targets; a newer batch replaces an unread one
	reloadCh  chan struct{}

	saidRefused bool // noteLimits said the tracker's cap was reached

	events *events.Recorder
}

func newDaemon(cfg config.Config, f *config.Flags, log *slog.Logger, b Build) (*daemon, error) {
	p, err := newParts(cfg, log, listing{}, true)
	if err != nil {
		return nil, err
	}
	d := &daemon{
		log: log, flags: f, parts: p, cfg: cfg,
		store:    exporter.NewStore(buildInfo(b), nil),
		probeQ:   make(chan []probe.Target, 1),
		reloadCh: make(chan struct{}, 1),
	}
	d.store.SetConfigReload(true, time.Now())
	d.store.SetCapabilities(p.caps.Names())
	d.killer = p.newKiller(cfg, d.store)
	if d.events, err = newEvents(cfg, log, p.engine, d.store); err != nil {
		p.Close()
		return nil, err
	}
	d.pipeline = engine.NewPipeline(p.engine, engine.PipelineOptions{
		Kill: killFunc(d.killer, p.engine), Publish: d.publish,
		Observe: func(results []probe.Result) {
			for _, r := range results {
				d.store.ObserveProbe(r)
			}
			d.probeErrs.note(d.log, results)
		},
	})
	return d, nil
}

func (d *daemon) run(ctx context.Context) error {
	defer d.parts.Close()
	defer d.events.Close()
	cfg := d.config()
	ls, err := exporter.Listen(cfg.Web.ListenAddress)
	if err != nil {
		return err
	}
	for _, l := range ls {
		d.log.Info("listening", "address", l.Addr().String())
	}
	reg := exporter.NewRegistry(d.store)
	if d.parts.pods != nil {
		reg.MustRegister(d.parts.pods) // ghostd_runtime_up
	}
	handler := exporter.NewHandler(d.store, exporter.HandlerOptions{Log: d.log, Registry: reg})
	if d.pprof {
		mux := http.NewServeMux()
		mux.Handle("/", handler)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		handler = mux
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		// The listeners are bound; serving ends only with ctx.
		return exporter.ServeListeners(gctx, handler, ls, cfg.Web.ConfigFile, d.log)
	})
	g.Go(func() error { return d.supervise(gctx, "scan", d.scanLoop) })
	if d.parts.prober != nil {
		g.Go(func() error { return d.supervise(gctx, "probe", d.probeLoop) })
	}
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				d.reload()
			}
		}
	})
	<-gctx.Done()
	_ = systemd.Stopping()
	d.log.Info("stopping")
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	case <-time.After(exporter.ShutdownTimeout + 500*time.Millisecond):
		d.log.Warn("tasks did not stop in time")
	}
	return nil
}

func (d *daemon) config() config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// supervise runs task until ctx ends. A task that fails or panics is logged
// and restarted with exponential backoff (1 s to 30 s); it never stops the others.
func (d *daemon) supervise(ctx context.Context, name string, task func(context.Context) error) error {
	backoff := time.Second
	for {
		err := runTask(ctx, task)
		if ctx.Err() != nil {
			return nil
		}
		d.log.Error("task failed; restarting", "task", name, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func runTask(ctx context.Context, task func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	if err := task(ctx); err != nil {
		return err
	}
	if ctx.Err() == nil {
		return errors.New("task returned early")
	}
	return nil
}

// scanLoop scans every interval, hands new suspects to the probe worker,
// publishes the snapshot, applies the kill policy and pets the watchdog.
func (d *daemon) scanLoop(ctx context.Context) error {
	wd, hasWD := systemd.WatchdogInterval()
	if hasWD {
		// A scan of many namespaces may outlast WatchdogSec: pet while it
		// moves from namespace to namespace, never while it is stuck.
		d.parts.engine.SetProgress(func() { _ = systemd.Watchdog() })
	}
	ready := false
	for {
		start := time.Now()
		d.scanOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !ready {
			ready = true
			_ = systemd.Ready()
			d.log.Info("first scan complete; ready", "took", time.Since(start).Round(time.Millisecond))
		}
		_ = systemd.Watchdog()
		// Sleep until the next scan, petting the watchdog at half its
		// timeout meanwhile; a stuck scan stops the pets and systemd restarts us.
		next := start.Add(d.config().Interval)
		for {
			wait := time.Until(next)
			if wait <= 0 {
				break
			}
			if hasWD && wait > wd/2 {
				wait = wd / 2
			}
			select {
			case <-ctx.Done():
				return nil
			case <-d.reloadCh:
				next = start.Add(d.config().Interval)
			case <-time.After(wait):
				_ = systemd.Watchdog()
			}
		}
	}
}

func (d *daemon) scanOnce(ctx context.Context) {
	t := d.pipeline.Scan(ctx)
	d.noteLimits(d.parts.engine.Limits())
	if len(t) > 0 {
		d.offer(t)
	}
	d.pipeline.Publish(ctx)
}

// killFunc is the pipeline's kill step: the killer's policy applied to the
// candidates, each outcome told to the engine's event history, and the
// keys of the sockets it ended. A nil killer kills nothing.
func killFunc(killer *kill.Killer, e *engine.Engine) engine.KillFunc {
	if killer == nil {
		return nil
	}
	return func(ctx context.Context, cands []engine.Candidate) []inventory.Key {
		if !killer.Policy().Enabled {
			return nil
		}
		var ended []inventory.Key
		for i, rec := range killer.Apply(ctx, cands) {
			e.NoteKill(rec.Key, string(cands[i].Verdict), string(rec.Mode), rec.Err, rec.Skipped)
			if rec.Skipped == "" && rec.Err == nil {
				ended = append(ended, rec.Key)
			}
		}
		return ended
	}
}

// publish makes a snapshot the pipeline built the latest one, and tells
// systemd what it counts.
func (d *daemon) publish(snap *exporter.Snapshot) {
	d.store.Publish(snap)
	ghosts, suspects := 0, 0
	for i := range snap.Summary {
		ghosts += snap.Summary[i].GhostCount()
		suspects += snap.Summary[i].Sessions
	}
	sockets := 0
	for _, n := range snap.Doc.Namespaces {
		sockets += n.Sockets
	}
	_ = systemd.Status(fmt.Sprintf("%d ghosts, %d suspects, %d sockets in %d namespaces", ghosts, suspects, sockets, len(snap.Doc.Namespaces)))
}

// noteLimits says once, in one line each, that a cap left namespaces or
// sockets out (the metrics ghostd_namespaces_skipped and
// ghostd_suspects_refused_total keep counting).
func (d *daemon) noteLimits(l exporter.Limits) {
	if l.SuspectsRefused > 0 && !d.saidRefused {
		d.saidRefused = true
		d.log.Warn("the cap on tracked sockets was reached; new suspects are refused beyond each namespace's fair share", "refused", l.SuspectsRefused)
	}
}

// offer queues the latest targets for the probe worker, replacing a batch it
// has not started yet: only the latest inventory's tuples are ever probed.
func (d *daemon) offer(t []probe.Target) {
	select {
	case <-d.probeQ:
	default:
	}
	d.probeQ <- t
}

// probeLoop probes queued targets through the pipeline, a chunk at a time.
func (d *daemon) probeLoop(ctx context.Context) error {
	var pending []probe.Target
	for {
		if len(pending) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case pending = <-d.probeQ:
			}
		}
		select {
		case newer := <-d.probeQ:
			pending = newer // the latest inventory wins
		default:
		}
		// The pipeline drops what a chunk already answered or what left
		// the table since the batch was made.
		pending = d.pipeline.ProbeChunk(ctx, pending)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// reload re-reads the configuration file on SIGHUP. A valid file (with the
// command-line flags still on top) is applied; an invalid one is logged and
// the running configuration is kept.
func (d *daemon) reload() {
	_ = systemd.Reloading()
	defer systemd.Ready()
	cfg, err := loadConfig(d.flags)
	if err != nil {
		d.log.Error("configuration reload failed; keeping the running configuration", "err", err)
		d.store.SetConfigReload(false, time.Time{})
		return
	}
	pol := cfg.Kill
	d.parts.checkKill(pol, d.store)
	d.mu.Lock()
	old := d.cfg
	d.cfg = cfg
	d.killer.SetPolicy(pol) // the same killer: a reload does not refill its rate limit
	d.mu.Unlock()
	d.parts.engine.SetOptions(engineOptions(cfg, listing{}, true))
	if !equalStrings(old.Web.ListenAddress, cfg.Web.ListenAddress) || old.Web.ConfigFile != cfg.Web.ConfigFile ||
		old.Probe.Enabled != cfg.Probe.Enabled || old.Netns != cfg.Netns || old.Events != cfg.Events {
		d.log.Warn("web, netns, probe on/off and events changes take effect after a restart")
	}
	d.store.SetOwnersTopK(cfg.Metrics.OwnersTopK)
	if d.parts.prober != nil {
		d.parts.prober.SetConfig(cfg.Probe)
	}
	d.store.SetConfigReload(true, time.Now())
	select {
	case d.reloadCh <- struct{}{}:
	default:
	}
	d.log.Info("configuration reloaded", "file", d.flags.ConfigFile)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// probeErrors logs why probes could not be sent, once per distinct reason
// (a missing raw socket fails every probe the same way).
type probeErrors struct{ seen map[string]bool }

func (pe *probeErrors) note(log *slog.Logger, results []probe.Result) {
	for _, r := range results {
		if r.Err == nil || errors.Is(r.Err, probe.ErrSocketGone) || errors.Is(r.Err, context.Canceled) {
			continue
		}
		msg := r.Err.Error()
		if pe.seen == nil {
			pe.seen = map[string]bool{}
		}
		if !pe.seen[msg] && len(pe.seen) < 32 {
			pe.seen[msg] = true
			log.Warn("suspects left unprobed", "err", msg)
		}
	}
}
