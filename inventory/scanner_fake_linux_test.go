package inventory

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// nsFakeConn is a Conn that returns scripted sockets.
type nsFakeConn struct {
	ns      *nsFakeKernel
	ino     uint64
	closed  bool
	dumpErr error
}

func (c *nsFakeConn) Dump(netns uint64, states StateMask, fn func(*Socket) error) (int, error) {
	if c.dumpErr != nil {
		return 0, c.dumpErr
	}
	n := 0
	for i := range c.ns.sockets[c.ino] {
		sk := Socket{Netns: netns, Cookie: uint64(i + 1), State: StateEstablished}
		if err := fn(&sk); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (c *nsFakeConn) Lookup(netns uint64, s *Socket) (Socket, bool, error) {
	return *s, int(s.Cookie) <= c.ns.sockets[c.ino], nil
}

func (c *nsFakeConn) Destroy(s *Socket) error { return nil }

func (c *nsFakeConn) Close() error {
	c.ns.mu.Lock()
	defer c.ns.mu.Unlock()
	c.closed = true
	c.ns.open--
	return nil
}

// nsFakeKernel scripts namespaces for a Scanner: which exist, how many sockets
// each holds, which cannot be entered.
type nsFakeKernel struct {
	mu      sync.Mutex
	nss     []Namespace
	sockets map[uint64]int
	denied  map[uint64]bool
	open    int // Conns not yet closed
	dials   int
	listErr error
}

// fakeHostNS, fakeNamedNS and fakeProcNS are the fake kernel's namespaces:
// the host's is inode 1 at /p/1, a named one's file is /r/NAME, a process's
// /p/PID.
func fakeHostNS() Namespace { return Namespace{Inode: 1, Name: "host", Path: "/p/1", Kind: KindHost} }

func fakeNamedNS(ino uint64, name string) Namespace {
	return Namespace{Inode: ino, Name: name, Path: "/r/" + name, Kind: KindNamed}
}

func fakeProcNS(ino uint64, name string, pid int) Namespace {
	return Namespace{Inode: ino, Name: name, Path: "/p/" + strconv.Itoa(pid), Kind: KindProcess, PID: pid}
}

func (k *nsFakeKernel) scanner(opts ScannerOptions) *Scanner {
	s := NewScanner(nil, opts)
	s.list = func() ([]Namespace, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		return slices.Clone(k.nss), k.listErr
	}
	s.inode = func(path string) (uint64, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, ns := range k.nss {
			if ns.Path == path {
				return ns.Inode, nil
			}
		}
		return 0, &os.PathError{Op: "readlink", Path: path, Err: syscall.ENOENT}
	}
	s.dial = func(ns *Namespace) (nsConn, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.denied[ns.Inode] {
			return nil, os.NewSyscallError("setns", syscall.EPERM)
		}
		k.dials++
		k.open++
		return &nsFakeConn{ns: k, ino: ns.Inode}, nil
	}
	return s
}

func (k *nsFakeKernel) remove(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nss = slices.DeleteFunc(k.nss, func(ns Namespace) bool { return ns.Name == name })
}

type nsFakeResult struct {
	Name    string
	Sockets int
	Err     string
}

func nsFakeScan(s *Scanner) []nsFakeResult {
	var out []nsFakeResult
	for _, r := range s.Scan(context.Background(), AllStates, func(*Namespace, *Socket) error { return nil }) {
		fr := nsFakeResult{Name: r.Name, Sockets: r.Sockets}
		switch {
		case errors.Is(r.Err, ErrNamespaceGone):
			fr.Err = "gone"
		case errors.Is(r.Err, syscall.EPERM):
			fr.Err = "EPERM"
		case r.Err != nil:
			fr.Err = r.Err.Error()
		}
		out = append(out, fr)
	}
	return out
}

// TestScannerFake covers the Scanner's bookkeeping without privilege: Conns
// are reused across scans, a namespace that cannot be entered fails alone, a
// vanished one fails once and its Conn is closed, Select filters.
func TestScannerFake(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run("workers="+strconv.Itoa(workers), func(t *testing.T) {
			k := &nsFakeKernel{
				nss: []Namespace{
					fakeHostNS(),
					fakeNamedNS(2, "blue"),
					fakeProcNS(3, "pid-x-30", 30),
					fakeProcNS(4, "locked", 40),
				},
				sockets: map[uint64]int{1: 5, 2: 2, 3: 1},
				denied:  map[uint64]bool{4: true},
			}
			s := k.scanner(ScannerOptions{Workers: workers})
			want := []nsFakeResult{{"host", 5, ""}, {"blue", 2, ""}, {"pid-x-30", 1, ""}, {"locked", 0, "EPERM"}}
			for i := range 3 {
				if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
					t.Fatalf("scan %d (-want +got):\n%s", i, diff)
				}
			}
			if k.dials != 3 || k.open != 3 {
				t.Errorf("%d dials, %d open after 3 scans; want 3 Conns dialled once and kept", k.dials, k.open)
			}

			// blue vanishes between listing and dumping.
			s.before = func(ns *Namespace) {
				if ns.Name == "blue" {
					k.remove("blue")
				}
			}
			want = []nsFakeResult{{"host", 5, ""}, {"blue", 0, "gone"}, {"pid-x-30", 1, ""}, {"locked", 0, "EPERM"}}
			if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
				t.Errorf("scan with blue vanishing (-want +got):\n%s", diff)
			}
			s.before = nil
			if k.open != 2 {
				t.Errorf("%d Conns open, want 2 after blue vanished", k.open)
			}
			// pid 30 exits before the next listing.
			k.remove("pid-x-30")
			want = []nsFakeResult{{"host", 5, ""}, {"locked", 0, "EPERM"}}
			if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
				t.Errorf("scan after pid 30 exited (-want +got):\n%s", diff)
			}
			if k.open != 1 {
				t.Errorf("%d Conns open, want 1", k.open)
			}
			if got := len(s.Namespaces()); got != 2 {
				t.Errorf("Namespaces() has %d, want 2", got)
			}
			// Lookup uses the namespace's Conn; unknown namespaces fail.
			if _, ok, err := s.Lookup(&Socket{Netns: 1, Cookie: 5}); !ok || err != nil {
				t.Errorf("Lookup in host = %v, %v", ok, err)
			}
			if _, _, err := s.Lookup(&Socket{Netns: 3, Cookie: 1}); !errors.Is(err, ErrUnknownNamespace) {
				t.Errorf("Lookup in a vanished namespace: %v, want ErrUnknownNamespace", err)
			}
			if err := s.Destroy(&Socket{Netns: 4}); !errors.Is(err, syscall.EPERM) {
				t.Errorf("Destroy in a namespace that cannot be entered: %v, want EPERM", err)
			}
			if err := s.Close(); err != nil || k.open != 0 {
				t.Errorf("Close = %v with %d Conns open", err, k.open)
			}
			if _, _, err := s.Lookup(&Socket{Netns: 1}); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Lookup after Close: %v", err)
			}
		})
	}
}

// TestScannerFakeSelectAndErrors: Select limits what is dialled, a dump error
// drops the Conn so the next scan dials afresh, a callback error ends only its
// namespace, a cancelled context ends the scan, listing errors are kept.
func TestScannerFakeSelectAndErrors(t *testing.T) {
	k := &nsFakeKernel{
		nss: []Namespace{
			fakeHostNS(),
			fakeNamedNS(2, "blue"),
			fakeNamedNS(3, "red"),
		},
		sockets: map[uint64]int{1: 5, 2: 2, 3: 3},
		listErr: errors.New("inventory: list process namespaces: permission denied"),
	}
	s := k.scanner(ScannerOptions{Workers: 1, Select: func(ns Namespace) bool { return ns.Kind == KindNamed }})
	defer s.Close()
	want := []nsFakeResult{{"blue", 2, ""}, {"red", 3, ""}}
	if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
		t.Errorf("selected scan (-want +got):\n%s", diff)
	}
	if k.dials != 2 {
		t.Errorf("%d dials, want 2: the host is not selected", k.dials)
	}
	if err := s.ListError(); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("ListError = %v", err)
	}

	// A broken Conn is closed and replaced on the next scan.
	s.mu.Lock()
	s.entries[2].conn.(*nsFakeConn).dumpErr = syscall.ENOBUFS
	s.mu.Unlock()
	got := nsFakeScan(s)
	if got[0].Err == "" || !strings.Contains(got[0].Err, "dump netns blue") || got[1].Err != "" {
		t.Errorf("scan with a broken Conn: %+v", got)
	}
	if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" || k.dials != 3 {
		t.Errorf("scan after the broken Conn (%d dials, want 3) (-want +got):\n%s", k.dials, diff)
	}

	// A callback error ends its namespace only, and keeps the Conn.
	stop := errors.New("stop")
	res := s.Scan(context.Background(), AllStates, func(ns *Namespace, sk *Socket) error {
		if ns.Name == "blue" {
			return stop
		}
		return nil
	})
	if !errors.Is(res[0].Err, stop) || res[1].Err != nil || res[1].Sockets != 3 || k.dials != 3 {
		t.Errorf("callback error: %+v, %d dials", res, k.dials)
	}

	// A cancelled context: every namespace reports it.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, r := range s.Scan(ctx, AllStates, func(*Namespace, *Socket) error { return nil }) {
		if !errors.Is(r.Err, context.Canceled) {
			t.Errorf("netns %s with a cancelled context: %v", r.Name, r.Err)
		}
	}
}

// TestScannerNamesAreNeverStolen: a namespace keeps its name while it
// exists. One that appears later under a name in use (another user's
// namespace named like a container, listed first because its pid is lower)
// gets "-INODE"; a pid- fallback name gives way to a container id.
func TestScannerNamesAreNeverStolen(t *testing.T) {
	k := &nsFakeKernel{
		nss: []Namespace{
			fakeHostNS(),
			fakeProcNS(3, "0123456789ab", 30),
			fakeProcNS(4, "pid-pause-40", 40),
		},
		sockets: map[uint64]int{1: 1, 2: 1, 3: 1, 4: 1},
	}
	s := k.scanner(ScannerOptions{Workers: 1})
	want := []nsFakeResult{{"host", 1, ""}, {"0123456789ab", 1, ""}, {"pid-pause-40", 1, ""}}
	if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
		t.Fatalf("first scan (-want +got):\n%s", diff)
	}
	// A newcomer with a lower pid: the listing names it first.
	k.mu.Lock()
	k.nss = []Namespace{
		fakeHostNS(),
		fakeProcNS(2, "0123456789ab", 20),
		fakeProcNS(3, "0123456789ab-3", 30),
		fakeProcNS(4, "fedcba987654", 40),
	}
	k.mu.Unlock()
	want = []nsFakeResult{{"host", 1, ""}, {"0123456789ab-2", 1, ""}, {"0123456789ab", 1, ""}, {"fedcba987654", 1, ""}}
	if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
		t.Errorf("after a newcomer (-want +got):\n%s", diff)
	}
	names := map[uint64]string{}
	for _, ns := range s.Namespaces() {
		names[ns.Inode] = ns.Name
	}
	if names[3] != "0123456789ab" || names[2] != "0123456789ab-2" {
		t.Errorf("Namespaces() %v", names)
	}
}

// TestScannerMaxNamespaces: past the cap, the last namespaces in listing
// order are skipped, counted, and said once.
func TestScannerMaxNamespaces(t *testing.T) {
	k := &nsFakeKernel{
		nss: []Namespace{
			fakeHostNS(),
			fakeNamedNS(2, "blue"),
			fakeProcNS(3, "pid-x-30", 30),
		},
		sockets: map[uint64]int{1: 1, 2: 1, 3: 1},
	}
	s := k.scanner(ScannerOptions{Workers: 1, MaxNamespaces: 2})
	want := []nsFakeResult{{"host", 1, ""}, {"blue", 1, ""}}
	for range 2 {
		if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
			t.Fatalf("scan (-want +got):\n%s", diff)
		}
		if s.Skipped() != 1 {
			t.Errorf("Skipped() = %d, want 1", s.Skipped())
		}
	}
	k.remove("blue")
	if diff := cmp.Diff([]nsFakeResult{{"host", 1, ""}, {"pid-x-30", 1, ""}}, nsFakeScan(s)); diff != "" || s.Skipped() != 0 {
		t.Errorf("under the cap (-want +got):\n%s; skipped %d", diff, s.Skipped())
	}
}

// TestScannerRuntimeNames: the Name hook's pod names replace derived ones
// (a container id), carry the pod's fields into the scan, never take a name
// another namespace holds, and stay when the runtime stops naming (down):
// names are stable while a namespace exists.
func TestScannerRuntimeNames(t *testing.T) {
	k := &nsFakeKernel{
		nss: []Namespace{
			fakeHostNS(),
			fakeNamedNS(2, "cni-1234"),
			fakeProcNS(3, "0123456789ab", 30),
			fakeNamedNS(4, "default/web"),
		},
		sockets: map[uint64]int{1: 1, 2: 1, 3: 1, 4: 1},
	}
	pods := map[uint64][2]string{2: {"default", "web"}, 3: {"kube-system", "dns"}}
	up := false
	name := func(list []Namespace) {
		if !up {
			return
		}
		for i := range list {
			if p, ok := pods[list[i].Inode]; ok {
				list[i].Name, list[i].RuntimeNamed = p[0]+"/"+p[1], true
				list[i].PodNamespace, list[i].PodName = p[0], p[1]
			}
		}
	}
	s := k.scanner(ScannerOptions{Workers: 1, Name: name})
	want := []nsFakeResult{{"host", 1, ""}, {"cni-1234", 1, ""}, {"0123456789ab", 1, ""}, {"default/web", 1, ""}}
	if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
		t.Fatalf("runtime down (-want +got):\n%s", diff)
	}
	up = true
	// Inode 4 already holds "default/web" (a deleted pod's namespace that
	// lingers): the pod in inode 2 keeps its old name rather than take it,
	// and a new namespace (5) that the runtime names so gets "-INODE".
	pods[5] = [2]string{"default", "web"}
	k.mu.Lock()
	k.nss = append(k.nss, fakeNamedNS(5, "cni-5678"))
	k.sockets[5] = 1
	k.mu.Unlock()
	want = []nsFakeResult{{"host", 1, ""}, {"cni-1234", 1, ""}, {"kube-system/dns", 1, ""}, {"default/web", 1, ""}, {"default/web-5", 1, ""}}
	if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
		t.Errorf("runtime up (-want +got):\n%s", diff)
	}
	var pod [2]string
	for _, r := range s.Scan(context.Background(), AllStates, func(*Namespace, *Socket) error { return nil }) {
		if r.Inode == 3 {
			pod = [2]string{r.PodNamespace, r.PodName}
		}
	}
	if pod != [2]string{"kube-system", "dns"} {
		t.Errorf("scan result's pod = %q, want kube-system/dns", pod)
	}
	up = false
	if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
		t.Errorf("runtime down again: names must stay (-want +got):\n%s", diff)
	}
}
