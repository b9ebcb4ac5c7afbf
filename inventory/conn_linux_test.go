//go:build linux

package inventory

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"

	"golang.org/x/sys/unix"
)

// pair is one loopback TCP connection owned by the test.
type pair struct {
	client, server *net.TCPConn
}

func (p pair) Close() {
	p.client.Close()
	p.server.Close()
}

// dialPair connects to ln and returns both ends.
func dialPair(t *testing.T, ln *net.TCPListener, network, addr string) pair {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return acceptPair(t, ln, c)
}

// acceptPair accepts c's server end from ln; both are closed in t.Cleanup.
func acceptPair(t *testing.T, ln *net.TCPListener, c net.Conn) pair {
	t.Helper()
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	p := pair{client: c.(*net.TCPConn), server: s}
	t.Cleanup(p.Close)
	return p
}

// loopPairs listens on the loopback address of network ("tcp4" or "tcp6")
// and connects n pairs to the listener.
func loopPairs(t *testing.T, network string, n int) (*net.TCPListener, []pair) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	ln := listen(t, network, addr)
	ps := make([]pair, n)
	for i := range ps {
		ps[i] = dialPair(t, ln, network, ln.Addr().String())
	}
	return ln, ps
}

// dumpedClient dumps c and returns the socket of p's client end.
func dumpedClient(t *testing.T, c *Conn, p pair) Socket {
	t.Helper()
	s, ok := find(dumpAll(t, c, AllStates), p.client.LocalAddr(), p.client.RemoteAddr())
	if !ok {
		t.Fatal("client not in the dump")
	}
	return s
}

func listen(t *testing.T, network, addr string) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listen %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func inode(t *testing.T, c *net.TCPConn) uint32 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return uint32(st.Ino)
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

// dumpAll dumps and copies every socket, keyed by local and remote address.
func dumpAll(t *testing.T, c *Conn, states StateMask) map[[2]netip.AddrPort]Socket {
	t.Helper()
	m := make(map[[2]netip.AddrPort]Socket)
	n, err := c.Dump(42, states, func(s *Socket) error {
		m[[2]netip.AddrPort{s.Local, s.Remote}] = *s
		return nil
	})
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	if n < len(m) {
		t.Fatalf("Dump returned %d, saw %d distinct sockets", n, len(m))
	}
	return m
}

// find looks up a connection end by its net.Conn addresses. Sockets of a
// dual-stack listener report v4-mapped addresses where Go unmaps them.
func find(m map[[2]netip.AddrPort]Socket, local, remote net.Addr) (Socket, bool) {
	l, r := addrPort(local), addrPort(remote)
	if s, ok := m[[2]netip.AddrPort{l, r}]; ok {
		return s, true
	}
	l6 := netip.AddrPortFrom(netip.AddrFrom16(l.Addr().As16()), l.Port())
	r6 := netip.AddrPortFrom(netip.AddrFrom16(r.Addr().As16()), r.Port())
	s, ok := m[[2]netip.AddrPort{l6, r6}]
	return s, ok
}

func dial(t *testing.T) *Conn {
	t.Helper()
	c, err := Dial(0)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestLiveDump(t *testing.T) {
	ln4 := listen(t, "tcp4", "127.0.0.1:0")
	ln6 := listen(t, "tcp6", "[::1]:0")
	lnDual := listen(t, "tcp", "[::]:0")
	p4 := dialPair(t, ln4, "tcp4", ln4.Addr().String())
	p6 := dialPair(t, ln6, "tcp6", ln6.Addr().String())
	port := lnDual.Addr().(*net.TCPAddr).Port
	pm := dialPair(t, lnDual, "tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String())
	// CLOSE_WAIT: the peer closed, the server end has not.
	pcw := dialPair(t, ln4, "tcp4", ln4.Addr().String())
	pcw.client.Close()

	c := dial(t)
	var m map[[2]netip.AddrPort]Socket
	deadline := time.Now().Add(5 * time.Second)
	for {
		m = dumpAll(t, c, AllStates)
		if s, ok := find(m, pcw.server.LocalAddr(), pcw.server.RemoteAddr()); ok && s.State == StateCloseWait || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	cases := []struct {
		name   string
		conn   *net.TCPConn
		family uint8
		state  State
		mapped bool
	}{
		{"v4 client", p4.client, FamilyInet, StateEstablished, false},
		{"v4 server", p4.server, FamilyInet, StateEstablished, false},
		{"v6 client", p6.client, FamilyInet6, StateEstablished, false},
		{"v6 server", p6.server, FamilyInet6, StateEstablished, false},
		{"v4 client of dual-stack", pm.client, FamilyInet, StateEstablished, false},
		{"v4-mapped server", pm.server, FamilyInet6, StateEstablished, true},
		{"close-wait server", pcw.server, FamilyInet, StateCloseWait, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := find(m, tc.conn.LocalAddr(), tc.conn.RemoteAddr())
			if !ok {
				t.Fatalf("%v -> %v not in the dump", tc.conn.LocalAddr(), tc.conn.RemoteAddr())
			}
			if s.Netns != 42 || s.Family != tc.family || s.State != tc.state {
				t.Errorf("netns %d family %d state %v, want 42 %d %v", s.Netns, s.Family, s.State, tc.family, tc.state)
			}
			if s.Local.Port() != addrPort(tc.conn.LocalAddr()).Port() || s.Remote.Port() != addrPort(tc.conn.RemoteAddr()).Port() {
				t.Errorf("ports %v -> %v", s.Local, s.Remote)
			}
			if s.Mapped() != tc.mapped {
				t.Errorf("Mapped() = %v, want %v (%v)", s.Mapped(), tc.mapped, s.Remote)
			}
			if tc.family == FamilyInet6 && !s.Local.Addr().Is6() {
				t.Errorf("IPv6 socket's address %v was unmapped", s.Local)
			}
			if s.Cookie == 0 {
				t.Error("cookie is 0")
			}
			if want := inode(t, tc.conn); s.Inode != want {
				t.Errorf("inode %d, want %d (fstat)", s.Inode, want)
			}
			if s.UID != uint32(os.Getuid()) {
				t.Errorf("uid %d, want %d", s.UID, os.Getuid())
			}
			if !s.Info.Valid() || s.Info.State != uint8(tc.state) {
				t.Errorf("tcp_info len %d state %d", s.Info.Len, s.Info.State)
			}
			if _, ok := s.Info.SndWnd(); !ok {
				t.Errorf("tcp_info of %d bytes lacks snd_wnd", s.Info.Len)
			}
			if s.Info.SndMSS == 0 || s.Info.RTO == 0 {
				t.Errorf("tcp_info looks empty: %+v", s.Info)
			}
		})
	}
	// This kernel (6.18) sends 280 bytes; older ones less.
	t.Logf("tcp_info length on this kernel: %d", m[[2]netip.AddrPort{addrPort(p4.client.LocalAddr()), addrPort(p4.client.RemoteAddr())}].Info.Len)
}

func TestLiveDumpStateFilter(t *testing.T) {
	ln, ps := loopPairs(t, "tcp4", 1)
	p := ps[0]
	m := dumpAll(t, dial(t), StateListen.Mask())
	if _, ok := find(m, p.client.LocalAddr(), p.client.RemoteAddr()); ok {
		t.Error("an ESTABLISHED socket passed a LISTEN-only filter")
	}
	for k, s := range m {
		if s.State != StateListen {
			t.Fatalf("%v: state %v passed a LISTEN-only filter", k, s.State)
		}
	}
	if _, ok := m[[2]netip.AddrPort{addrPort(ln.Addr()), netip.AddrPortFrom(netip.IPv4Unspecified(), 0)}]; !ok {
		t.Error("the listener is missing from a LISTEN-only dump")
	}
}

func TestLiveDumpCallbackError(t *testing.T) {
	loopPairs(t, "tcp4", 3)
	c := dial(t)
	stop := errors.New("stop")
	n, err := c.Dump(1, AllStates, func(*Socket) error { return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Dump = %d, %v; want 1, stop", n, err)
	}
	// The aborted dump must not poison the next one (the kernel refuses a
	// new dump with EBUSY while the old one is still running).
	if m := dumpAll(t, c, AllStates); len(m) < 3 {
		t.Fatalf("second dump saw %d sockets", len(m))
	}
}

func TestLiveLookup(t *testing.T) {
	_, ps := loopPairs(t, "tcp4", 1)
	p := ps[0]
	c := dial(t)
	s := dumpedClient(t, c, p)
	got, ok, err := c.Lookup(7, &s)
	if err != nil || !ok {
		t.Fatalf("Lookup = %v, %v", ok, err)
	}
	if got.Cookie != s.Cookie || got.Local != s.Local || got.Remote != s.Remote || got.Netns != 7 || !got.Info.Valid() {
		t.Errorf("Lookup returned %+v, want the socket %+v", got, s)
	}
	wrong := s
	wrong.Cookie++
	if _, ok, err := c.Lookup(7, &wrong); ok || err != nil {
		t.Errorf("Lookup with a wrong cookie = %v, %v; want false, nil", ok, err)
	}
	gone := s
	gone.Remote = netip.AddrPortFrom(gone.Remote.Addr(), 1)
	if _, ok, err := c.Lookup(7, &gone); ok || err != nil {
		t.Errorf("Lookup of a missing socket = %v, %v; want false, nil", ok, err)
	}
}

func TestLiveDestroy(t *testing.T) {
	_, ps := loopPairs(t, "tcp6", 1)
	p := ps[0]
	c := dial(t)
	s := dumpedClient(t, c, p)
	wrong := s
	wrong.Cookie++
	err := c.Destroy(&wrong)
	if os.Geteuid() != 0 {
		if !errors.Is(err, syscall.EPERM) {
			t.Fatalf("Destroy without CAP_NET_ADMIN = %v, want EPERM", err)
		}
		t.Skip("needs root: SOCK_DESTROY needs CAP_NET_ADMIN")
	}
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("Destroy with a wrong cookie = %v, want ENOENT", err)
	}
	if err := c.Destroy(&s); errors.Is(err, ErrDestroyUnsupported) {
		t.Skipf("kernel without CONFIG_INET_DIAG_DESTROY: %v", err)
	} else if err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.client.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("owner's Read after Destroy = %v, want ECONNABORTED", err)
	}
	p.server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.server.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("peer's Read after Destroy = %v, want ECONNRESET", err)
	}
	if _, ok, err := c.Lookup(0, &s); ok || err != nil {
		t.Errorf("Lookup after Destroy = %v, %v; want false, nil", ok, err)
	}
	if err := c.Destroy(&s); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("second Destroy = %v, want ENOENT", err)
	}
}

// testNetns creates a test namespace with lo up and opens it for Dial; the
// fd is closed in t.Cleanup.
func testNetns(t *testing.T) (*testnet.NS, *os.File) {
	t.Helper()
	ns := testnet.NewNS(t, "inv") // skips when not root
	f, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return ns, f
}

// nsPair connects to ln from a socket created inside ns and returns both ends.
func nsPair(t *testing.T, ns *testnet.NS, ln *net.TCPListener, network, addr string) pair {
	t.Helper()
	return acceptPair(t, ln, ns.Dial(t, network, addr))
}

func TestLiveDialNetns(t *testing.T) {
	ns, nsf := testNetns(t)
	ln := ns.Listen(t, "tcp4", "127.0.0.1:0").(*net.TCPListener)
	p := nsPair(t, ns, ln, "tcp4", ln.Addr().String())
	c, err := Dial(int(nsf.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := dumpAll(t, c, AllStates)
	if len(m) != 3 {
		t.Errorf("fresh namespace holds %d sockets, want 3: %v", len(m), m)
	}
	if _, ok := find(m, p.client.LocalAddr(), p.client.RemoteAddr()); !ok {
		t.Error("the namespace's connection is missing")
	}
	if _, ok := find(dumpAll(t, dial(t), AllStates), p.client.LocalAddr(), p.client.RemoteAddr()); ok {
		t.Error("the namespace's connection shows in the host's dump")
	}
}

// TestLiveDumpAllocations checks that a dump's allocations do not grow with
// the number of sockets: the receive buffer and the Socket are reused.
func TestLiveDumpAllocations(t *testing.T) {
	loopPairs(t, "tcp4", 100)
	c := dial(t)
	seen := 0
	fn := func(*Socket) error { seen++; return nil }
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := c.Dump(1, AllStates, fn); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.0f allocations per Dump of %d sockets", allocs, seen/21)
	if allocs > 40 { // about 13 per request, in netlink.Conn.Send
		t.Errorf("%.0f allocations per Dump of %d sockets, want a small constant", allocs, seen/21)
	}
}

// TestLiveDumpOneWalk checks that this kernel serves the one-walk
// TCPDIAG_GETSOCK dump and that it finds what the two per-family
// SOCK_DIAG_BY_FAMILY dumps find.
func TestLiveDumpOneWalk(t *testing.T) {
	ln4 := listen(t, "tcp4", "127.0.0.1:0")
	ln6 := listen(t, "tcp6", "[::1]:0")
	p4 := dialPair(t, ln4, "tcp4", ln4.Addr().String())
	p6 := dialPair(t, ln6, "tcp6", ln6.Addr().String())
	one := dial(t)
	m1 := dumpAll(t, one, AllStates)
	if one.noCompat {
		t.Fatal("the kernel refused TCPDIAG_GETSOCK; Dump fell back to two walks")
	}
	two := dial(t)
	two.noCompat = true
	m2 := dumpAll(t, two, AllStates)
	for _, c := range []*net.TCPConn{p4.client, p4.server, p6.client, p6.server} {
		s1, ok1 := find(m1, c.LocalAddr(), c.RemoteAddr())
		s2, ok2 := find(m2, c.LocalAddr(), c.RemoteAddr())
		if !ok1 || !ok2 || s1.Cookie != s2.Cookie || s1.Family != s2.Family || s1.Inode != s2.Inode {
			t.Errorf("%v: one walk %v %+v, two walks %v %+v", c.LocalAddr(), ok1, s1, ok2, s2)
		}
	}
}

// TestLiveDumpAfterTimeout checks that a dump that timed out half way is
// drained, so the kernel does not refuse the next one with EBUSY.
func TestLiveDumpAfterTimeout(t *testing.T) {
	loopPairs(t, "tcp4", 200)
	c := dial(t)
	c.timeout = time.Nanosecond
	if _, err := c.Dump(1, AllStates, func(*Socket) error { return nil }); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Dump with a 1 ns timeout = %v, want a deadline error", err)
	}
	c.timeout = defaultTimeout
	for range 2 {
		if m := dumpAll(t, c, AllStates); len(m) < 400 {
			t.Fatalf("dump after a timed-out one saw %d sockets, want >= 400", len(m))
		}
	}
}
