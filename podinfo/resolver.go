package podinfo

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ghostd/ghostd/inventory"
)

// Options configure a Resolver.
type Options struct {
	// Endpoints are the runtime sockets to ask (see NewSource). One among
	// DefaultEndpoints is skipped silently while its socket is absent; any
	// other is reported in ghostd_runtime_up even then.
	Endpoints []string
	// Every is how long a runtime's listing is reused; 0 means 10 s. A
	// namespace the listing does not know triggers an earlier refresh, at
	// most once per MinEvery (0: 1 s).
	Every, MinEvery time.Duration
	// Timeout bounds one runtime's listing; 0 means 2 s.
	Timeout time.Duration
	// ProcRoot is where /proc is mounted ("" means /proc).
	ProcRoot string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Resolver names network namespaces after pods and socket owners' containers
// after the runtime's names. It asks every runtime at most once per
// Options.Every, and re-checks each pod's namespace on every use, so a
// namespace number the kernel reuses never inherits a deleted pod's name. A
// runtime that is down costs its names, logged once and exported as
// ghostd_runtime_up 0: namespaces keep the names inventory derives. It is
// safe for concurrent use.
type Resolver struct {
	log      *slog.Logger
	sources  []*source
	every    time.Duration
	minEvery time.Duration
	timeout  time.Duration
	procRoot string
	now      func() time.Time
	inode    func(path string) (uint64, error)

	refreshMu sync.Mutex // serialises refreshes

	mu         sync.Mutex
	refreshed  time.Time // last refresh attempt
	saidNone   bool      // logged that no runtime socket exists
	pods       []Pod     // every up runtime's pods
	containers map[string]Container
	unknown    map[uint64]bool // inodes the last refresh did not name
	// byInode is the last Name call's answer: pod by namespace inode.
	byInode map[uint64]Pod

	upDesc *prometheus.Desc
}

// source is one runtime endpoint and what the Resolver knows of its health.
type source struct {
	Source
	endpoint string
	explicit bool
	seen     bool // its socket existed once: report it from then on
	up       bool
	logged   bool // its current state was logged
	snap     Snapshot
}

// New returns a Resolver; log may be nil. It fails only on a malformed
// endpoint.
func New(log *slog.Logger, opts Options) (*Resolver, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Resolver{
		log: log, every: opts.Every, minEvery: opts.MinEvery, timeout: opts.Timeout,
		procRoot: opts.ProcRoot, now: opts.Now, inode: nsInode,
		containers: map[string]Container{}, unknown: map[uint64]bool{}, byInode: map[uint64]Pod{},
		upDesc: prometheus.NewDesc("ghostd_runtime_up",
			"Whether the container runtime answered its last listing (1) or not (0); pods are named from it.",
			[]string{"runtime", "endpoint"}, nil),
	}
	if r.every <= 0 {
		r.every = 10 * time.Second
	}
	if r.minEvery <= 0 {
		r.minEvery = time.Second
	}
	if r.timeout <= 0 {
		r.timeout = 2 * time.Second
	}
	if r.procRoot == "" {
		r.procRoot = inventory.DefaultProcRoot
	}
	if r.now == nil {
		r.now = time.Now
	}
	for _, ep := range opts.Endpoints {
		s, err := NewSource(ep)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.sources = append(r.sources, &source{Source: s, endpoint: ep, explicit: !slices.Contains(DefaultEndpoints, ep)})
	}
	return r, nil
}

// Close closes the runtime connections.
func (r *Resolver) Close() error {
	var errs []error
	for _, s := range r.sources {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// Refresh asks every runtime now, each within Options.Timeout.
func (r *Resolver) Refresh(ctx context.Context) {
	// One refresh at a time, and the runtimes asked without r.mu, so that a
	// hung runtime delays no scrape (Collect) and no Container lookup.
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	r.mu.Lock()
	r.refreshed = r.now()
	r.mu.Unlock()
	results := make([]sourceAnswer, len(r.sources))
	for i, s := range r.sources {
		lctx, cancel := context.WithTimeout(ctx, r.timeout)
		results[i].snap, results[i].err = s.List(lctx)
		cancel()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applyLocked(results)
}

// sourceAnswer is one source's answer to a refresh.
type sourceAnswer struct {
	snap Snapshot
	err  error
}

// applyLocked takes in a refresh's answers, one per source, logging each
// source's change of state once.
func (r *Resolver) applyLocked(results []sourceAnswer) {
	clear(r.unknown)
	var pods []Pod
	containers := make(map[string]Container)
	for i, s := range r.sources {
		snap, err := results[i].snap, results[i].err
		absent := errors.Is(err, ErrNoSocket)
		if !absent {
			s.seen = true
		}
		switch {
		case err == nil:
			if !s.up || !s.logged {
				r.log.Info("container runtime answers: pods and containers are named from it",
					"runtime", s.Runtime(), "endpoint", s.endpoint, "pods", len(snap.Pods), "containers", len(snap.Containers))
			}
			s.up, s.logged, s.snap = true, true, snap
		case absent && !s.explicit && !s.seen:
			s.snap = Snapshot{} // a default endpoint this node does not have
		default:
			if s.up || !s.logged {
				r.log.Warn("container runtime unreachable: namespaces and containers keep the names inventory derives",
					"runtime", s.Runtime(), "endpoint", s.endpoint, "err", err)
			}
			s.up, s.logged, s.snap = false, true, Snapshot{}
		}
		pods = append(pods, s.snap.Pods...)
		for _, c := range s.snap.Containers {
			containers[c.ID] = c
			if len(c.ID) > shortID {
				containers[shortKey+c.ID[:shortID]] = c
			}
		}
	}
	r.pods, r.containers = pods, containers
	if !r.saidNone && !slices.ContainsFunc(r.sources, func(s *source) bool { return s.seen || s.explicit }) {
		r.saidNone = true
		eps := make([]string, 0, len(r.sources))
		for _, s := range r.sources {
			eps = append(eps, s.endpoint)
		}
		r.log.Info("no container runtime socket found: namespaces and containers keep the names inventory derives", "endpoints", eps)
	}
}

// Name is the inventory.ScannerOptions.Name hook: it renames every listed
// namespace that is a pod's network namespace to "<namespace>/<pod>" (a
// plain Docker container's: the container's name) and fills in its pod
// fields. It refreshes the runtimes' listing when it is older than
// Options.Every, or when a namespace appeared that the listing does not name.
func (r *Resolver) Name(list []inventory.Namespace) {
	if r.due(list) {
		r.Refresh(context.Background())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byInode = r.podsByInodeLocked()
	byID := r.podsByShortIDLocked()
	for i := range list {
		ns := &list[i]
		p, ok := r.byInode[ns.Inode]
		if !ok && ns.Kind == inventory.KindProcess {
			// inventory named it after the container id in its holder's
			// (root-owned) cgroup: the runtime says whose container that is.
			if p, ok = byID[ns.Name]; ok {
				r.byInode[ns.Inode] = p
			}
		}
		if !ok {
			if ns.Kind != inventory.KindHost {
				r.unknown[ns.Inode] = true
			}
			continue
		}
		ns.Name = p.NetnsName()
		ns.RuntimeNamed = true
		if !p.Docker {
			ns.PodNamespace, ns.PodName = p.Namespace, p.Name
		}
	}
}

// due reports whether the runtimes' listing is to be refreshed before list
// is named: it is older than Every, or older than MinEvery while list holds a
// namespace the last listing did not name.
func (r *Resolver) due(list []inventory.Namespace) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	due := r.refreshed.IsZero() || now.Sub(r.refreshed) >= r.every
	if !due && now.Sub(r.refreshed) >= r.minEvery {
		for i := range list {
			if list[i].Kind != inventory.KindHost && !r.unknownKnown(list[i].Inode) {
				due = true
				break
			}
		}
	}
	return due
}

// unknownKnown reports whether the inode is one the last refresh already
// failed to name (so it triggers no refresh of its own) or one it named.
func (r *Resolver) unknownKnown(ino uint64) bool {
	if r.unknown[ino] {
		return true
	}
	_, ok := r.byInode[ino]
	return ok
}

// podsByInodeLocked resolves each pod's namespace inode now: through its
// namespace file, else its sandbox process. A pod whose namespace cannot be
// resolved (gone, or not visible from here) names nothing.
func (r *Resolver) podsByInodeLocked() map[uint64]Pod {
	out := make(map[uint64]Pod, len(r.pods))
	for _, p := range r.pods {
		ino, err := uint64(0), error(nil)
		if p.NetnsPath != "" {
			ino, err = r.inode(p.NetnsPath)
		}
		if (p.NetnsPath == "" || err != nil) && p.PID > 0 {
			ino, err = r.inode(r.procRoot + "/" + strconv.Itoa(p.PID) + "/ns/net")
		}
		if err != nil || ino == 0 {
			continue
		}
		if _, dup := out[ino]; dup {
			continue // two runtimes claim one namespace: the first listed wins
		}
		out[ino] = p
	}
	return out
}

// shortID is the length of the container ids inventory takes from cgroup
// paths; shortKey marks such a key in Resolver.containers.
const (
	shortID  = 12
	shortKey = "short:"
)

// podsByShortIDLocked maps the short ids of the sandboxes and containers of
// pods whose namespace podsByInodeLocked did not find to those pods.
func (r *Resolver) podsByShortIDLocked() map[string]Pod {
	found := make(map[string]bool, len(r.byInode))
	for _, p := range r.byInode {
		found[p.NetnsName()] = true
	}
	out := map[string]Pod{}
	for _, p := range r.pods {
		if found[p.NetnsName()] {
			continue
		}
		for _, id := range p.IDs {
			if len(id) > shortID {
				out[id[:shortID]] = p
			}
		}
	}
	return out
}

// Container returns the runtime's record of a container, by its full id or
// by the 12-digit short id inventory takes from cgroup paths.
func (r *Resolver) Container(id string) (Container, bool) {
	if id == "" {
		return Container{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.containers[id]; ok {
		return c, true
	}
	if len(id) != shortID {
		return Container{}, false
	}
	c, ok := r.containers[shortKey+id]
	return c, ok
}

// Pods returns the pods the last Name call matched to a namespace, by inode.
func (r *Resolver) Pods() map[uint64]Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[uint64]Pod, len(r.byInode))
	for k, v := range r.byInode {
		out[k] = v
	}
	return out
}

// OwnerLookup is what Owners wraps: inventory.Owners.
type OwnerLookup interface {
	Each(netns uint64, inodes []uint32, fn func(ino uint32, o inventory.Owner))
}

// Owners wraps an owner lookup so that every owner in a container carries
// the container's name and pod as the runtime reports them.
func (r *Resolver) Owners(o OwnerLookup) OwnerLookup { return ownerNamer{o, r} }

type ownerNamer struct {
	o OwnerLookup
	r *Resolver
}

func (n ownerNamer) Each(netns uint64, inodes []uint32, fn func(ino uint32, o inventory.Owner)) {
	n.o.Each(netns, inodes, func(ino uint32, ow inventory.Owner) {
		if c, ok := n.r.Container(ow.Container); ok {
			ow.ContainerName = c.Name
			ow.PodNamespace, ow.PodName = c.PodNamespace, c.PodName
		}
		fn(ino, ow)
	})
}

// Describe implements prometheus.Collector.
func (r *Resolver) Describe(ch chan<- *prometheus.Desc) { ch <- r.upDesc }

// Collect implements prometheus.Collector: ghostd_runtime_up for every
// configured endpoint and every default one whose socket exists or existed.
func (r *Resolver) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sources {
		if !s.explicit && !s.seen {
			continue
		}
		v := 0.0
		if s.up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(r.upDesc, prometheus.GaugeValue, v, s.Runtime(), s.endpoint)
	}
}
