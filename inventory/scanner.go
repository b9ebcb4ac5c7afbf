package inventory

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ScannerOptions configure a Scanner.
type ScannerOptions struct {
	ProcRoot string // default "/proc"
	RunNetns string // default "/run/netns"
	// Select picks the namespaces to scan (see SelectNetns); nil scans all.
	Select func(Namespace) bool
	// Workers is how many namespaces are dumped at once; 0 means 2 when
	// GOMAXPROCS allows it (measured: 1.4–1.8× faster scans on 2 cores).
	Workers int
	// MaxNamespaces caps the namespaces dumped per scan (each dump walks the
	// host's whole TCP hash); the rest are skipped, in listing order (host,
	// named, then process-held by pid), and counted. 0 means
	// DefaultMaxNamespaces.
	MaxNamespaces int
	// Name, when set, sees every listing before the Scanner names its
	// namespaces, and may rename a namespace by setting its Name and
	// RuntimeNamed (the container runtime's pod names: podinfo.Resolver).
	// A runtime name replaces a derived one; the others stay stable.
	Name func(list []Namespace)
	// OneWalk lists the sockets of every namespace that shares the host's
	// TCP tables with one BPF walk of those tables (inventory/bpfwalk)
	// instead of one sock_diag dump each, when it loads (root or
	// CAP_BPF+CAP_PERFMON, BTF); otherwise the Scanner says so once in the
	// log and dumps. A namespace is still dumped the first time it is
	// scanned, which gives its sockets their cookies. Worth it for a daemon
	// that scans again and again, not for one scan.
	OneWalk bool
	// openWalker replaces bpfwalk in tests.
	openWalker walkOpener
}

// DefaultMaxNamespaces is the default cap on namespaces dumped per scan:
// ~1000 pods' worth of namespaces, far above a node's 110-pod default.
const DefaultMaxNamespaces = 1024

// NamespaceResult is the outcome of scanning one namespace.
type NamespaceResult struct {
	Namespace
	Sockets  int           // sockets passed to the callback
	Err      error         // nil on success
	Duration time.Duration // time spent entering and dumping it (walked: the whole walk's time)
	Source   string        // SourceSockDiag or SourceWalk
}

// Scanner dumps the sockets of every network namespace. It keeps one netlink
// connection per namespace across scans, opened through the namespace's path,
// and closes it as soon as the namespace is gone, so it never pins a deleted
// namespace for longer than one scan. Each dump walks the host's shared TCP
// hash, so its cost is CPU in the kernel: two namespaces are dumped at once
// by default, and the callback is still called for one socket at a time. Its
// methods are safe for concurrent use, but the Scan callback must not call
// Lookup or Destroy.
type Scanner struct {
	log     *slog.Logger
	sel     func(Namespace) bool
	namer   func([]Namespace)
	list    func() ([]Namespace, error)
	inode   func(path string) (uint64, error)
	dial    func(ns *Namespace) (nsConn, error)
	before  func(ns *Namespace) // test hook: runs before a namespace is entered
	sysctls func(ns *Namespace) (TCPSysctls, error)
	// sysctlWarned is set once an unreadable namespace's sysctls were logged.
	sysctlWarned atomic.Bool
	workers      int // namespaces dumped at once
	maxNS        int // namespaces dumped per scan

	mu      sync.Mutex
	nss     []Namespace
	skipped int // selected namespaces the last scan skipped (MaxNamespaces)
	entries map[uint64]*nsEntry
	names   map[uint64]string // each listed namespace's name, kept while it exists
	listErr error
	closed  atomic.Bool
	walk    *walkState // nil: sock_diag only
}

var errScannerClosed = fmt.Errorf("inventory: scanner: %w", net.ErrClosed)

// nsConn is what the Scanner needs from a per-namespace Conn.
type nsConn interface {
	Dump(netns uint64, states StateMask, fn func(*Socket) error) (int, error)
	Lookup(netns uint64, s *Socket) (Socket, bool, error)
	Destroy(s *Socket) error
	Close() error
}

// nsEntry is one namespace's connection; mu serialises its use.
type nsEntry struct {
	mu      sync.Mutex
	ns      Namespace
	conn    nsConn
	lastErr string
	// tcp are the namespace's sysctls, read at tcpAt (zero: never).
	tcp   TCPSysctls
	tcpAt time.Time
}

// SysctlMaxAge is how long a namespace's TCPSysctls are reused before the
// Scanner reads them again: they rarely change, and reading them costs two
// setns calls on a fresh thread.
const SysctlMaxAge = time.Minute

// NewScanner returns a Scanner; log may be nil.
func NewScanner(log *slog.Logger, opts ScannerOptions) *Scanner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := newLister(opts.ProcRoot, opts.RunNetns)
	workers := opts.Workers
	if workers <= 0 {
		workers = min(2, runtime.GOMAXPROCS(0))
	}
	maxNS := opts.MaxNamespaces
	if maxNS <= 0 {
		maxNS = DefaultMaxNamespaces
	}
	s := &Scanner{
		workers: workers,
		maxNS:   maxNS,
		log:     log,
		sel:     opts.Select,
		namer:   opts.Name,
		list:    l.list,
		inode:   l.inode,
		dial:    dialNamespace,
		sysctls: ReadTCPSysctls,
		entries: make(map[uint64]*nsEntry),
		names:   make(map[uint64]string),
	}
	if opts.OneWalk {
		s.walk = loadWalk(log, opts.openWalker)
	}
	return s
}

// keepNames makes names stable: a namespace keeps the name it was first
// listed under for as long as it exists, and a namespace that appears later
// with a name already in use gets "-INODE" appended. A listing names
// namespaces first come, first served (by kind, then pid), so without this a
// new namespace, another user's included, could take over the name of an
// existing container's, and deny rules and dashboards on that name would
// follow it. A "pid-COMM-PID" fallback name gives way to a container id once
// one is known, and any name to the container runtime's pod name.
// Callers hold s.mu.
func (s *Scanner) keepNames(list []Namespace) {
	taken := make(map[string]uint64, len(list))
	present := make(map[uint64]bool, len(list))
	for _, ns := range list {
		present[ns.Inode] = true
		if old, ok := s.names[ns.Inode]; ok {
			taken[old] = ns.Inode
		}
	}
	for ino := range s.names {
		if !present[ino] {
			delete(s.names, ino)
		}
	}
	for i := range list {
		ns := &list[i]
		old, known := s.names[ns.Inode]
		better := !strings.HasPrefix(ns.Name, "pid-") && strings.HasPrefix(old, "pid-") ||
			ns.RuntimeNamed && ns.Name != old // the runtime's pod name beats a derived one
		if known && !better {
			ns.Name = old
			continue
		}
		if owner, ok := taken[ns.Name]; ok && owner != ns.Inode {
			if known {
				ns.Name = old // the better name is in use: keep the old one
				continue
			}
			ns.Name += "-" + strconv.FormatUint(ns.Inode, 10)
		}
		if known {
			delete(taken, old)
		}
		taken[ns.Name] = ns.Inode
		s.names[ns.Inode] = ns.Name
	}
}

// Skipped returns how many selected namespaces the last scan skipped because
// of ScannerOptions.MaxNamespaces.
func (s *Scanner) Skipped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipped
}

// Scan lists the namespaces, then dumps the sockets in the given states from
// each selected one, calling fn for every socket with the namespace it lives
// in. fn must not keep ns or sk: both are reused. A namespace that cannot be
// entered or that vanishes mid-scan gets its own error in its result; the
// others are still scanned. An error from fn ends that namespace's dump and is
// its result's error. Results come in listing order: host, named, processes.
func (s *Scanner) Scan(ctx context.Context, states StateMask, fn func(ns *Namespace, sk *Socket) error) []NamespaceResult {
	list, err := s.list()
	s.noteListErr(err)
	if s.namer != nil {
		s.namer(list)
	}

	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil
	}
	s.keepNames(list)
	present := make(map[uint64]bool, len(list))
	for _, ns := range list {
		present[ns.Inode] = true
	}
	for ino, e := range s.entries {
		if !present[ino] {
			e.mu.Lock()
			e.closeConn()
			e.mu.Unlock()
			delete(s.entries, ino)
		}
	}
	var todo []*nsEntry
	for _, ns := range list {
		e := s.entries[ns.Inode]
		if e == nil {
			e = &nsEntry{ns: ns}
			s.entries[ns.Inode] = e
		} else {
			e.mu.Lock()
			e.ns = ns // the holder's pid or the name may have changed
			e.mu.Unlock()
		}
		if s.sel == nil || s.sel(ns) {
			todo = append(todo, e)
		}
	}
	skipped := max(0, len(todo)-s.maxNS)
	if skipped > 0 && s.skipped == 0 {
		s.log.Warn("more network namespaces than the scan may dump; the rest are skipped", "namespaces", len(todo), "max", s.maxNS)
	}
	s.skipped = skipped
	todo = todo[:len(todo)-skipped]
	s.nss = list
	s.mu.Unlock()

	if s.walk != nil {
		return s.scanWithWalk(ctx, todo, states, fn)
	}
	results := make([]NamespaceResult, len(todo))
	all := make([]int, len(todo))
	for i := range all {
		all[i] = i
	}
	s.dumpEntries(ctx, todo, all, results, states, fn)
	return results
}

// dumpEntries dumps todo[i] for every i in which into results[i].
func (s *Scanner) dumpEntries(ctx context.Context, todo []*nsEntry, which []int, results []NamespaceResult, states StateMask, fn func(ns *Namespace, sk *Socket) error) {
	if s.workers <= 1 || len(which) <= 1 {
		for _, i := range which {
			results[i] = s.scanOne(ctx, todo[i], states, fn)
		}
		return
	}
	// fn still sees one socket at a time.
	var fnMu sync.Mutex
	serial := func(ns *Namespace, sk *Socket) error {
		fnMu.Lock()
		defer fnMu.Unlock()
		return fn(ns, sk)
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range s.workers {
		wg.Go(func() {
			for i := range next {
				results[i] = s.scanOne(ctx, todo[i], states, serial)
			}
		})
	}
	for _, i := range which {
		next <- i
	}
	close(next)
	wg.Wait()
}

func (s *Scanner) scanOne(ctx context.Context, e *nsEntry, states StateMask, fn func(ns *Namespace, sk *Socket) error) NamespaceResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := NamespaceResult{Namespace: e.ns, Source: SourceSockDiag}
	if err := ctx.Err(); err != nil {
		r.Err = err
		return r
	}
	start := time.Now()
	if s.before != nil {
		s.before(&r.Namespace)
	}
	conn, err := s.connLocked(e)
	if err == nil {
		s.refreshSysctlsLocked(e, start)
		ns := e.ns
		ns.TCP = e.tcp
		r.Namespace.TCP = e.tcp
		var cbErr error
		r.Sockets, err = conn.Dump(ns.Inode, states, func(sk *Socket) error {
			cbErr = fn(&ns, sk)
			return cbErr
		})
		if err != nil && cbErr == nil {
			// The connection may be broken: dial afresh next time. (A
			// dump ended by the callback leaves the Conn usable.)
			e.closeConn()
		}
		if err != nil {
			err = fmt.Errorf("inventory: dump netns %s: %w", ns.Name, err)
		}
	}
	r.Err, r.Duration = err, time.Since(start)
	s.noteNamespaceErr(e, err)
	return r
}

// connLocked returns e's connection, dialling it if needed, after checking that
// the namespace's path still leads to the same namespace.
func (s *Scanner) connLocked(e *nsEntry) (nsConn, error) {
	ino, err := s.inode(e.ns.Path)
	if err != nil || ino != e.ns.Inode {
		e.closeConn()
		if err != nil && errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("inventory: enter netns %s: %w", e.ns.Name, err)
		}
		return nil, fmt.Errorf("inventory: netns %s (%s): %w", e.ns.Name, e.ns.Path, ErrNamespaceGone)
	}
	if e.conn != nil {
		return e.conn, nil
	}
	if s.closed.Load() {
		return nil, errScannerClosed
	}
	c, err := s.dial(&e.ns)
	if err != nil {
		return nil, fmt.Errorf("inventory: enter netns %s: %w", e.ns.Name, err)
	}
	e.conn = c
	return c, nil
}

// refreshSysctlsLocked reads e's TCPSysctls when they are older than
// SysctlMaxAge. A namespace whose sysctls cannot be read gets the kernel's
// defaults, which make keepalive sockets idle suspects rather than hide
// them, and the first such failure is logged once.
func (s *Scanner) refreshSysctlsLocked(e *nsEntry, now time.Time) {
	if !e.tcpAt.IsZero() && now.Sub(e.tcpAt) < SysctlMaxAge {
		return
	}
	e.tcpAt = now
	t, err := s.sysctls(&e.ns)
	if err != nil {
		e.tcp = DefaultTCPSysctls()
		if !s.sysctlWarned.Swap(true) {
			s.log.Warn("cannot read a namespace's TCP keepalive sysctls; assuming the kernel's defaults (7200 s, 75 s, 9 probes, tcp_retries2 15)",
				"netns", e.ns.Name, "err", err)
		}
		return
	}
	e.tcp = t.OrDefaults()
}

func (e *nsEntry) closeConn() {
	if e.conn != nil {
		_ = e.conn.Close()
		e.conn = nil
	}
}

// Namespaces returns every namespace the last Scan listed (selected or not).
func (s *Scanner) Namespaces() []Namespace {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Namespace(nil), s.nss...)
}

// entry returns the entry of the namespace with inode ino.
func (s *Scanner) entry(ino uint64) (*nsEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, errScannerClosed
	}
	e := s.entries[ino]
	if e == nil {
		return nil, fmt.Errorf("inventory: netns inode %d: %w", ino, ErrUnknownNamespace)
	}
	return e, nil
}

// Lookup finds sk again in its namespace (sk.Netns), by 4-tuple and cookie. It
// reports false when the socket is gone.
func (s *Scanner) Lookup(sk *Socket) (Socket, bool, error) {
	e, err := s.entry(sk.Netns)
	if err != nil {
		return Socket{}, false, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := s.connLocked(e)
	if err != nil {
		return Socket{}, false, err
	}
	got, ok, err := c.Lookup(e.ns.Inode, sk)
	if err != nil {
		e.closeConn()
		return Socket{}, false, fmt.Errorf("inventory: lookup in netns %s: %w", e.ns.Name, err)
	}
	return got, ok, nil
}

// Destroy sends SOCK_DESTROY for sk from inside its namespace (sk.Netns).
func (s *Scanner) Destroy(sk *Socket) error {
	e, err := s.entry(sk.Netns)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := s.connLocked(e)
	if err != nil {
		return err
	}
	if err := c.Destroy(sk); err != nil {
		return fmt.Errorf("inventory: destroy in netns %s: %w", e.ns.Name, err)
	}
	return nil
}

// Close closes every connection; the Scanner cannot be used afterwards.
func (s *Scanner) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for ino, e := range s.entries {
		e.mu.Lock()
		if e.conn != nil {
			errs = append(errs, e.conn.Close())
			e.conn = nil
		}
		e.mu.Unlock()
		delete(s.entries, ino)
	}
	if s.walk != nil && !s.closed.Load() {
		errs = append(errs, s.walk.w.Close())
	}
	s.closed.Store(true)
	return errors.Join(errs...)
}
