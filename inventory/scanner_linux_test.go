package inventory

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

// seenSocket is what a test scan callback records.
type seenSocket struct {
	nsName  string
	nsInode uint64
	inode   uint32
	cookie  uint64
	sk      Socket
}

// scanAll scans and indexes the sockets by client 4-tuple.
func scanAll(t *testing.T, s *Scanner, fn func(ns *Namespace, sk *Socket)) (map[[2]netip.AddrPort]seenSocket, []NamespaceResult) {
	t.Helper()
	seen := make(map[[2]netip.AddrPort]seenSocket)
	res := s.Scan(context.Background(), AllStates, func(ns *Namespace, sk *Socket) error {
		seen[[2]netip.AddrPort{sk.Local, sk.Remote}] = seenSocket{ns.Name, ns.Inode, sk.Inode, sk.Cookie, *sk}
		if fn != nil {
			fn(ns, sk)
		}
		return nil
	})
	return seen, res
}

// scanClean is scanAll for a scan that must reach want namespaces, each
// without error.
func scanClean(t *testing.T, s *Scanner, want int) (map[[2]netip.AddrPort]seenSocket, []NamespaceResult) {
	t.Helper()
	seen, res := scanAll(t, s, nil)
	if len(res) != want {
		t.Fatalf("got %d results, want %d: %+v", len(res), want, res)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("netns %s: %v", r.Name, r.Err)
		}
	}
	return seen, res
}

func resultFor(res []NamespaceResult, ino uint64) (NamespaceResult, bool) {
	for _, r := range res {
		if r.Inode == ino {
			return r, true
		}
	}
	return NamespaceResult{}, false
}

func mustNsInode(t *testing.T, path string) uint64 {
	t.Helper()
	ino, err := nsInode(path)
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

// TestScanOwnNamespace needs no privilege: the caller's own namespace is
// dumped without setns.
func TestScanOwnNamespace(t *testing.T) {
	self := mustNsInode(t, "/proc/self/ns/net")
	c, err := openLoopConn()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := NewScanner(nil, ScannerOptions{Select: func(ns Namespace) bool { return ns.Inode == self }})
	defer s.Close()
	seen, res := scanAll(t, s, nil)
	if len(res) != 1 || res[0].Inode != self || res[0].Err != nil {
		t.Fatalf("results %+v, want one for our own namespace %d without error", res, self)
	}
	got, ok := seen[[2]netip.AddrPort{c.local(), c.remote()}]
	if !ok || got.nsInode != self {
		t.Fatalf("client socket %v->%v: found %v in netns %d, want netns %d", c.local(), c.remote(), ok, got.nsInode, self)
	}
	if res[0].Sockets < 3 {
		t.Errorf("result counts %d sockets, want at least the 3 of the connection", res[0].Sockets)
	}
	sk := got.sk
	again, ok, err := s.Lookup(&sk)
	if err != nil || !ok || again.Cookie != sk.Cookie {
		t.Errorf("Lookup = cookie %d, %v, %v; want cookie %d", again.Cookie, ok, err, sk.Cookie)
	}
	c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		again, ok, err = s.Lookup(&sk)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || again.State != StateEstablished || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ok && again.State == StateEstablished {
		t.Errorf("Lookup after close still finds it ESTABLISHED")
	}
	sk.Netns = 1
	if _, _, err := s.Lookup(&sk); !errors.Is(err, ErrUnknownNamespace) {
		t.Errorf("Lookup in an unknown namespace: err = %v, want ErrUnknownNamespace", err)
	}
}

// TestScanNamespaces: a named and an anonymous namespace, each with a
// loopback connection: each socket is attributed to its namespace (inode and
// name) and to the process that holds it.
func TestScanNamespaces(t *testing.T) {
	needRoot(t)
	netns := testnet.NewNS(t, "ns")
	name := netns.Name
	named := loopConnIn(t, netns)
	namedIno := mustNsInode(t, netns.Path)

	h := startHolder(t, true)
	anonIno := mustNsInode(t, "/proc/"+strconv.Itoa(h.Pid())+"/ns/net")
	hostIno, err := nsInode("/proc/1/ns/net")
	if err != nil { // pid 1 out of reach (a sandbox): our own stands in
		hostIno = mustNsInode(t, "/proc/self/ns/net")
	}
	if anonIno == namedIno || anonIno == hostIno || namedIno == hostIno {
		t.Fatalf("namespaces not distinct: host %d named %d anon %d", hostIno, namedIno, anonIno)
	}

	s := NewScanner(nil, ScannerOptions{Select: func(ns Namespace) bool {
		return ns.Kind == KindHost || ns.Inode == namedIno || ns.Inode == anonIno
	}})
	defer s.Close()
	seen, res := scanClean(t, s, 3) // host, named, anonymous

	// The named one.
	r, _ := resultFor(res, namedIno)
	if r.Name != name || r.Kind != KindNamed || r.Path != "/run/netns/"+name {
		t.Errorf("named result %+v, want name %s kind named", r.Namespace, name)
	}
	gotNamed, ok := seen[[2]netip.AddrPort{named.local(), named.remote()}]
	if !ok || gotNamed.nsInode != namedIno || gotNamed.nsName != name || gotNamed.sk.Netns != namedIno {
		t.Errorf("named socket: found %v as %+v, want netns %s (%d)", ok, gotNamed, name, namedIno)
	}

	// The anonymous one, named after its holder.
	r, _ = resultFor(res, anonIno)
	comm, _ := os.ReadFile("/proc/" + strconv.Itoa(h.Pid()) + "/comm")
	wantName := "pid-" + strings.TrimSpace(string(comm)) + "-" + strconv.Itoa(h.Pid())
	if cg, err := os.ReadFile("/proc/" + strconv.Itoa(h.Pid()) + "/cgroup"); err == nil {
		if _, c := ParseCgroup(cg); c != "" { // CI inside a container
			wantName = c
		}
	}
	if r.Name != wantName || r.Kind != KindProcess || r.PID != h.Pid() {
		t.Errorf("anonymous result %+v, want name %s, pid %d", r.Namespace, wantName, h.Pid())
	}
	gotAnon, ok := seen[[2]netip.AddrPort{h.local, h.remote}]
	if !ok || gotAnon.nsInode != anonIno || gotAnon.nsName != wantName {
		t.Errorf("anonymous socket: found %v as %+v, want netns %s (%d)", ok, gotAnon, wantName, anonIno)
	}
	if got := s.Namespaces(); len(got) < 3 {
		t.Errorf("Namespaces() = %d, want at least 3", len(got))
	}

	// Owners: the named one is ours, the anonymous one the helper's.
	o := NewOwners("/proc")
	owners := lookup(o, 0, []uint32{gotNamed.inode, gotAnon.inode, 0})
	self, _ := os.ReadFile("/proc/self/comm")
	want := map[uint32]int{gotNamed.inode: os.Getpid(), gotAnon.inode: h.Pid()}
	for ino, pid := range want {
		ow, ok := owners[ino]
		if !ok || ow.PID != pid || ow.Comm != strings.TrimSpace(string(self)) {
			t.Errorf("owner of inode %d = %+v (%v), want pid %d comm %s", ino, ow, ok, pid, self)
		}
	}
	if _, ok := owners[0]; ok || len(owners) != 2 {
		t.Errorf("Resolve returned %v, want exactly the two inodes", owners)
	}

	// Lookup and Destroy go through the socket's own namespace.
	sk := gotNamed.sk
	if got, ok, err := s.Lookup(&sk); err != nil || !ok || got.Cookie != sk.Cookie {
		t.Errorf("Lookup in %s: %v, %v", name, ok, err)
	}
	ska := gotAnon.sk
	if err := s.Destroy(&ska); err != nil && !errors.Is(err, ErrDestroyUnsupported) {
		t.Errorf("Destroy in the anonymous namespace: %v", err)
	} else if err == nil {
		if _, ok, err := s.Lookup(&ska); err != nil || ok {
			t.Errorf("after Destroy, Lookup = %v, %v; want gone", ok, err)
		}
	}
}

// TestScanNamespaceVanishes: namespaces that vanish mid-scan (deleted, or
// their holder exits) fail alone, their Conns are closed, and they are not
// listed any more; the others are scanned.
func TestScanNamespaceVanishes(t *testing.T) {
	needRoot(t)
	// Named so that they are listed, and dumped, in the order a, b, c.
	tag := "nv" + strconv.Itoa(os.Getpid()) + "-"
	prefix := "gd-" + tag
	nsA, nsB, nsC := testnet.NewNS(t, tag+"a"), testnet.NewNS(t, tag+"b"), testnet.NewNS(t, tag+"c")
	a, b, c := nsA.Name, nsB.Name, nsC.Name
	ca := loopConnIn(t, nsA)
	cb := loopConnIn(t, nsB)
	h := startHolder(t, true)
	anonIno := mustNsInode(t, "/proc/"+strconv.Itoa(h.Pid())+"/ns/net")
	inos := map[string]uint64{}
	for _, n := range []string{a, b, c} {
		inos[n] = mustNsInode(t, "/run/netns/"+n)
	}
	// One at a time: the namespaces vanish while an earlier one is dumped.
	s := NewScanner(nil, ScannerOptions{Workers: 1, Select: func(ns Namespace) bool {
		return strings.HasPrefix(ns.Name, prefix) || ns.Inode == anonIno
	}})
	defer s.Close()

	// First scan: everything is there; the Conns stay open.
	seen, _ := scanClean(t, s, 4)
	if _, ok := seen[[2]netip.AddrPort{cb.local(), cb.remote()}]; !ok {
		t.Fatal("first scan: socket in b not found")
	}

	// Second scan: while a's sockets are being dumped, b is deleted and the
	// anonymous namespace's holder exits; c vanishes between listing and
	// dumping.
	var once sync.Once
	s.before = func(ns *Namespace) {
		if ns.Name == c {
			if err := nsC.Delete(); err != nil {
				t.Error(err)
			}
		}
	}
	seen, res := scanAll(t, s, func(ns *Namespace, sk *Socket) {
		if ns.Name == a {
			once.Do(func() {
				if err := nsB.Delete(); err != nil {
					t.Error(err)
				}
				h.Stop()
			})
		}
	})
	s.before = nil
	if len(res) != 4 {
		t.Fatalf("second scan: %d results, want 4: %+v", len(res), res)
	}
	for _, r := range res {
		switch {
		case r.Name == a:
			if r.Err != nil {
				t.Errorf("netns %s: %v, want success", a, r.Err)
			}
		case !errors.Is(r.Err, ErrNamespaceGone):
			t.Errorf("netns %s (%s): err = %v, want ErrNamespaceGone", r.Name, r.Kind, r.Err)
		}
	}
	if got, ok := seen[[2]netip.AddrPort{ca.local(), ca.remote()}]; !ok || got.nsInode != inos[a] {
		t.Errorf("second scan: socket in a: %v %+v", ok, got)
	}
	if _, ok := seen[[2]netip.AddrPort{cb.local(), cb.remote()}]; ok {
		t.Errorf("second scan reported b's socket after b was deleted")
	}
	// b's, c's and the anonymous namespace's Conns are closed (TestScanFDsFlat
	// counts the fds).
	for _, ino := range []uint64{inos[b], inos[c], anonIno} {
		s.mu.Lock()
		e := s.entries[ino]
		s.mu.Unlock()
		if e != nil && e.conn != nil {
			t.Errorf("netns inode %d vanished but its Conn is still open", ino)
		}
	}

	// Third scan: only a is left.
	_, res = scanAll(t, s, nil)
	if len(res) != 1 || res[0].Name != a || res[0].Err != nil {
		t.Errorf("third scan: %+v, want a alone, without error", res)
	}
}

// TestScanFDsFlat: namespaces come and go between 20 scans; the Scanner's fd
// count does not grow.
func TestScanFDsFlat(t *testing.T) {
	needRoot(t)
	tag := "nf" + strconv.Itoa(os.Getpid())
	prefix := "gd-" + tag + "-"
	var mu sync.Mutex
	pids := map[int]bool{}
	s := NewScanner(nil, ScannerOptions{Select: func(ns Namespace) bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.HasPrefix(ns.Name, prefix) || pids[ns.PID]
	}})
	defer s.Close()
	_ = s.Scan(context.Background(), AllStates, func(*Namespace, *Socket) error { return nil })
	base := testnet.OpenFDs(t)
	for i := range 20 {
		ns := testnet.NewNS(t, tag)
		pid, stop := startSleeper(t)
		mu.Lock()
		pids[pid] = true
		mu.Unlock()
		res := s.Scan(context.Background(), AllStates, func(*Namespace, *Socket) error { return nil })
		if len(res) != 2 {
			t.Fatalf("scan %d: %d results, want the named and the anonymous namespace: %+v", i, len(res), res)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("scan %d: netns %s: %v", i, r.Name, r.Err)
			}
		}
		if err := ns.Delete(); err != nil {
			t.Fatal(err)
		}
		stop()
		_ = s.Scan(context.Background(), AllStates, func(*Namespace, *Socket) error { return nil })
		if got := testnet.OpenFDs(t); got != base {
			t.Fatalf("scan %d: %d fds open, want %d as before the namespaces came and went", i, got, base)
		}
	}
}

// BenchmarkScanWorkers compares dumping namespaces one after another with two
// at a time, on 8 empty namespaces next to one holding 8000 loopback
// connections: every dump walks the shared TCP hash, the cost that
// parallelism splits across the cores.
func BenchmarkScanWorkers(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: creates network namespaces")
	}
	tag := "nb" + strconv.Itoa(os.Getpid())
	prefix := "gd-" + tag + "-"
	var nss []*testnet.NS
	for range 9 {
		nss = append(nss, testnet.NewNS(b, tag))
	}
	const conns = 8000
	closeAll, err := manyLoopConnsIn(nss[0], conns)
	if err != nil {
		b.Fatal(err)
	}
	defer closeAll()
	for _, workers := range []int{1, 2} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			s := NewScanner(nil, ScannerOptions{Workers: workers, Select: func(ns Namespace) bool { return strings.HasPrefix(ns.Name, prefix) }})
			defer s.Close()
			for b.Loop() {
				n := 0
				for _, r := range s.Scan(context.Background(), AllStates, func(*Namespace, *Socket) error { return nil }) {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
					n += r.Sockets
				}
				if n < 2*conns {
					b.Fatalf("%d sockets, want at least %d", n, 2*conns)
				}
			}
		})
	}
}

// manyLoopConnsIn opens n loopback connections inside ns.
func manyLoopConnsIn(ns *testnet.NS, n int) (func(), error) {
	var all []io.Closer
	closeAll := func() {
		for _, c := range all {
			c.Close()
		}
	}
	err := ns.Do(func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		all = append(all, ln)
		for range n {
			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return err
			}
			a, err := ln.Accept()
			if err != nil {
				c.Close()
				return err
			}
			all = append(all, c, a)
		}
		return nil
	})
	if err != nil {
		closeAll()
		return nil, err
	}
	return closeAll, nil
}
