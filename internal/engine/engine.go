package engine

import (
	"cmp"
	"context"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/epoch"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/pathidle"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// Inventory is what the engine needs from inventory.Scanner.
type Inventory interface {
	Scan(ctx context.Context, states inventory.StateMask, fn func(ns *inventory.Namespace, sk *inventory.Socket) error) []inventory.NamespaceResult
}

// Prober is what the engine needs from probe.Prober.
type Prober interface {
	ProbeAll(ctx context.Context, targets []probe.Target) []probe.Result
	Mode() (probe.Mode, string)
}

// Owners resolves socket inodes to their owning processes
// (inventory.Owners): one walk over /proc, then fn for every inode found;
// netns, when not 0, is the namespace all the sockets live in, whose
// processes are read first.
type Owners interface {
	Each(netns uint64, inodes []uint32, fn func(ino uint32, o inventory.Owner))
}

// Options tune the engine.
type Options struct {
	Tracker tracker.Config
	// Backoff is how long an alive suspect waits before it is probed again.
	Backoff time.Duration
	// Reconfirm is how often a ghost is probed again to re-confirm it.
	Reconfirm time.Duration
	// All makes the document list every socket, not only suspects (scan --all).
	All bool
	// Processes, with All, names the process of every listed socket, not
	// only of the suspects (scan --all --processes). Naming a socket's
	// process reads every socket fd on the host: its cost grows with the
	// host's other processes, not with the sockets listed.
	Processes bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// nowEvery is how many sockets of a dump share one reading of the clock:
// a dump lists some 700 sockets a millisecond.
const nowEvery = 128

// KilledRetention is how long a killed session stays in the document after
// its socket left the table, so operators see what ghostd did.
const KilledRetention = 10 * time.Minute

type goneSession struct {
	session exporter.Session
	at      time.Time
}

// nsState is one namespace as the last scan saw it.
type nsState struct {
	ns      inventory.Namespace
	sockets int
	err     error
	dur     time.Duration
	source  string // inventory.SourceSockDiag or SourceWalk
}

// stateCounts counts a namespace's sockets by family (0 inet, 1 inet6) and state.
type stateCounts [2][16]int

// Engine keeps the state between passes. Its methods are safe for concurrent use.
//
// Locking: mu guards the engine's own state and is never held across I/O
// (the inventory dump, the /proc walk for owners) nor while a caller's
// function runs. The tracker has its own lock, always taken after mu when
// both are held, and never calls back: a dump feeds the tracker without mu,
// and the prober's SetKeepalive needs only the tracker's. scanMu only keeps
// passes one at a time (two interleaved dumps would confuse the tracker's
// per-namespace generations); no state hides behind it.
type Engine struct {
	inv    Inventory
	prober Prober // nil when probing is off
	owners Owners
	opts   Options

	scanMu   sync.Mutex // one Scan at a time
	progress func()     // called as a long Scan moves from namespace to namespace (SetProgress)
	mu       sync.Mutex
	tracker  *tracker.Tracker
	killed   map[inventory.Key]bool
	// gone holds the sessions ghostd killed whose socket has left the
	// table, shown (killed, no longer a ghost) for KilledRetention.
	gone    map[inventory.Key]goneSession
	names   map[uint64]inventory.Namespace
	last    []nsState
	counts  map[uint64]*stateCounts // by netns inode
	all     listedTable             // every socket of the last scan, only with Options.All
	scanned time.Time
	scanDur time.Duration
	epoch   epoch.Epoch // verdicts' times are stamps from it
	// ghostChanges counts verdicts that changed the ghost counts (GhostChanges).
	ghostChanges uint64
	// ownerOf maps a reported socket's inode to its owner: an index in
	// ownerTab plus one, 0 when nobody holds it. Owners are per process, so
	// the table stays small while the map has one 8-byte entry per suspect.
	ownerOf  map[uint32]uint32
	ownerTab []inventory.Owner
	ownerIdx map[inventory.Owner]uint32
	// ownerMiss holds, for each inode whose lookup found no process, when
	// to look again: a miss is often transient (a race with accept or exec,
	// a socket in flight over SCM_RIGHTS), and a deny rule on comms or units
	// must see the owner once it can be found.
	ownerMiss map[uint32]time.Time
	// ownersSeen is the tracker's NewSuspects at the last owner lookup.
	ownersSeen uint64
	paths      *pathidle.Table // idle timeouts per destination (pathidle.go); nil until a probe is recorded
	listening  listeners       // the last scan's listening sockets: which sockets were accepted (pathidle.go)
	ev         eventState      // events.go
}

// New returns an engine. prober may be nil (probing off); owners may be nil.
func New(inv Inventory, prober Prober, owners Owners, opts Options) *Engine {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Engine{
		inv: inv, prober: prober, owners: owners, opts: opts,
		tracker:   tracker.New(opts.Tracker),
		killed:    make(map[inventory.Key]bool),
		gone:      make(map[inventory.Key]goneSession),
		names:     make(map[uint64]inventory.Namespace),
		counts:    make(map[uint64]*stateCounts),
		epoch:     epoch.New(opts.Now()),
		ownerOf:   make(map[uint32]uint32),
		ownerIdx:  make(map[inventory.Owner]uint32),
		ownerMiss: make(map[uint32]time.Time),
	}
}

// SetOptions applies new thresholds and probe timing (a config reload).
func (e *Engine) SetOptions(opts Options) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if opts.Now == nil {
		opts.Now = e.opts.Now
	}
	e.opts = opts
	e.tracker.SetConfig(opts.Tracker)
}

// SetProgress sets a function Scan calls, at most once a second, as it moves
// on to another namespace: a daemon feeds systemd's watchdog with it, so a
// scan of many namespaces that is slow but moving is not taken for a hang.
func (e *Engine) SetProgress(fn func()) {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	e.progress = fn
}

// Scan runs one inventory pass over every selected namespace and updates the
// tracker. It does not probe. The dump runs without the engine's lock (the
// tracker has its own), so the page, the API and the probe loop do not wait
// for the kernel; passes are serialised.
func (e *Engine) Scan(ctx context.Context) []inventory.NamespaceResult {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	e.mu.Lock()
	opts := e.opts
	e.mu.Unlock()
	start := opts.Now()
	counts := make(map[uint64]*stateCounts, len(e.counts))
	var all listedTable
	lis := listeners{}
	var cur *stateCounts
	curNetns := uint64(0)
	lastProgress := start
	now, sinceNow := start, 0
	results := e.inv.Scan(ctx, inventory.AllStates, func(ns *inventory.Namespace, sk *inventory.Socket) error {
		// The time of this socket's dump: tcp_info's "ms ago" fields are
		// relative to it, and a dump of many namespaces takes a while. It
		// is read every nowEvery sockets (well under a millisecond of a
		// dump, tcp_info's resolution) and at each namespace: reading the
		// clock took 15 ms of a 200 000-socket scan, once per socket.
		if sinceNow++; sinceNow == nowEvery || sk.Netns != curNetns {
			now, sinceNow = opts.Now(), 0
		}
		if cur == nil || sk.Netns != curNetns {
			if e.progress != nil {
				if now.Sub(lastProgress) >= time.Second {
					e.progress()
					lastProgress = now
				}
			}
			if cur = counts[sk.Netns]; cur == nil {
				cur = new(stateCounts)
				counts[sk.Netns] = cur
			}
			curNetns = sk.Netns
			e.tracker.SetSysctls(sk.Netns, ns.TCP)
		}
		fam := 0
		if sk.Family == inventory.FamilyInet6 {
			fam = 1
		}
		cur[fam][sk.State&15]++
		lis.add(sk)
		e.tracker.Observe(now, sk)
		if opts.All {
			all.add(listSocket(sk, e.tracker.KernelOf(sk).Deadline))
		}
		return nil
	})
	if opts.All {
		// Sorted, so a session can be found by key.
		all.sortByKey()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts, e.all, e.listening = counts, all, lis
	now = e.opts.Now()
	seen := make(map[uint64]bool, len(results))
	e.last = e.last[:0]
	for _, r := range results {
		seen[r.Inode] = true
		e.names[r.Inode] = r.Namespace
		e.last = append(e.last, nsState{ns: r.Namespace, sockets: r.Sockets, err: r.Err, dur: r.Duration, source: r.Source})
		if r.Err == nil {
			e.tracker.EndNamespace(now, r.Inode)
		}
	}
	e.namespacesGoneLocked(seen, now)
	for ino := range e.names {
		if !seen[ino] {
			e.tracker.DropNamespace(ino)
			delete(e.names, ino)
		}
	}
	for k := range e.killed {
		if _, ok := e.tracker.Reasons(k); !ok {
			delete(e.killed, k)
		}
	}
	for k, g := range e.gone {
		if now.Sub(g.at) > KilledRetention || !seen[k.Netns] {
			delete(e.gone, k)
		}
	}
	e.scanned = now
	e.scanDur = e.opts.Now().Sub(start)
	e.scanEventsLocked(now)
	return results
}

// Limits returns what the caps on namespaces and tracked sockets left out.
func (e *Engine) Limits() exporter.Limits {
	l := exporter.Limits{SuspectsRefused: e.tracker.Refused()}
	if sk, ok := e.inv.(interface{ Skipped() int }); ok {
		l.NamespacesSkipped = sk.Skipped()
	}
	return l
}

func compareKeys(a, b inventory.Key) int {
	if c := cmp.Compare(a.Netns, b.Netns); c != 0 {
		return c
	}
	return cmp.Compare(a.Cookie, b.Cookie)
}

// probeMode is "off" without a prober, else the prober's mode.
func (e *Engine) probeMode() string {
	if e.prober == nil {
		return "off"
	}
	m, _ := e.prober.Mode()
	return string(m)
}

// SetKeepalive passes a socket's own keepalive settings (read by the
// prober's BPF iterator) to the tracker: they replace the namespace's
// sysctl guess in the idle rule and the kernel deadline.
// It takes only the tracker's lock: the prober calls it while reading
// sequence numbers, which may happen under the engine's.
func (e *Engine) SetKeepalive(k inventory.Key, ka tracker.KeepaliveSettings) {
	e.tracker.SetKeepalive(k, ka)
}

// FamilyName returns "inet" or "inet6".
func FamilyName(f uint8) string {
	if f == inventory.FamilyInet6 {
		return "inet6"
	}
	return "inet"
}

// FormatAddr formats an address as net.JoinHostPort does ("[2001:db8::2]:443").
func FormatAddr(ap netip.AddrPort) string {
	var buf [64]byte
	return string(appendAddr(buf[:0], ap))
}

// formatAddrs is FormatAddr of both addresses of a socket in one
// allocation (each string is a part of it): a scan --all formats 200 000
// pairs.
func formatAddrs(local, remote netip.AddrPort) (string, string) {
	var buf [128]byte
	b := appendAddr(buf[:0], local)
	n := len(b)
	both := string(appendAddr(b, remote))
	return both[:n], both[n:]
}

// appendAddr appends ap as FormatAddr formats it.
func appendAddr(b []byte, ap netip.AddrPort) []byte {
	switch a := ap.Addr(); {
	case !a.IsValid():
		b = append(b, a.String()...) // "invalid IP", no colon: no brackets
	case a.Is4():
		b = a.AppendTo(b)
	default: // a colon in every IPv6 form (v4-mapped, zoned): bracketed
		b = append(a.AppendTo(append(b, '[')), ']')
	}
	return strconv.AppendUint(append(b, ':'), uint64(ap.Port()), 10)
}
