package reasontest

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/tracker"
)

// keepalivePair returns a connection through the router whose server end
// has SO_KEEPALIVE on and nothing else, as PostgreSQL sets it on every TCP
// backend: the keepalive time, interval and count are the namespace's
// sysctls (the listener is made with Go's keepalive off, so that no
// TCP_KEEPIDLE is ever set on it). The client's keepalive is off.
func keepalivePair(t *testing.T, n *testnet.Net) (server, client *net.TCPConn) {
	t.Helper()
	l := n.Server.ListenNoKeepalive(t, "tcp4", net.JoinHostPort(n.ServerV4.String(), "0"))
	defer l.Close()
	c := n.Client.Dial(t, "tcp4", l.Addr().String()).(*net.TCPConn)
	if err := c.SetKeepAlive(false); err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	server = s.(*net.TCPConn)
	setsockopt(t, server, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	return server, c
}

func setsockopt(t *testing.T, c *net.TCPConn, level, opt, v int) {
	t.Helper()
	testnet.Control(t, c, fmt.Sprintf("setsockopt %d/%d=%d", level, opt, v), func(fd int) error {
		return unix.SetsockoptInt(fd, level, opt, v)
	})
}

// keepaliveSetup starts a parallel test on a fresh test network with a
// watcher whose tracker knows the kernel-deadline horizon (20 s).
func keepaliveSetup(t *testing.T) (*testnet.Net, *watcher) {
	t.Helper()
	t.Parallel()
	n := testnet.New(t)
	w := newWatcher(t, n.Server)
	c := cfg
	c.Horizon = 20 * time.Second
	c.RetransBackoff = 0
	w.tr.SetConfig(c)
	return n, w
}

// readSysctls gives the watcher's tracker the server namespace's sysctls,
// read the way the scanner reads them.
func (w *watcher) readSysctls(t *testing.T) inventory.TCPSysctls {
	t.Helper()
	s, err := inventory.ReadTCPSysctls(&inventory.Namespace{Inode: w.ns.Inode, Name: w.ns.Name, Path: w.ns.Path})
	if err != nil {
		t.Fatal(err)
	}
	w.tr.SetSysctls(w.ns.Inode, s)
	return s
}

// TestKeepaliveOnKernelDefaultsIsIdle: a PostgreSQL-shaped socket (keepalive
// on, the kernel's 7200 s) whose peer went silent is an idle suspect once
// idle, not left to a kernel that would take 2 h 11 min; its deadline says so.
func TestKeepaliveOnKernelDefaultsIsIdle(t *testing.T) {
	n, w := keepaliveSetup(t)
	if s := w.readSysctls(t); s.KeepaliveTime != inventory.DefaultKeepaliveTime {
		t.Fatalf("a fresh namespace's keepalive time is %v, want the kernel's %v", s.KeepaliveTime, inventory.DefaultKeepaliveTime)
	}
	server, client := keepalivePair(t, n)
	exchange(t, server, client)
	if got, s := w.scan(t, server); !got.Empty() || s.Timer != inventory.TimerKeepalive || s.Expires < 7000_000 {
		t.Fatalf("right after traffic: %q timer %d expires %d ms; want no reason, a keepalive timer near 7200 s", got, s.Timer, s.Expires)
	}
	n.GoSilent(t)
	w.waitFor(t, server, reasons(tracker.ReasonIdle), 4*time.Second)
	_, s := w.scan(t, server)
	if s.Timer != inventory.TimerKeepalive {
		t.Errorf("the idle suspect's timer is %d, want keepalive", s.Timer)
	}
	e, _ := w.tr.Get(s.Key())
	d := e.Kernel.Deadline
	if d.Basis != tracker.DeadlineKeepalive || !d.LowerBound || d.In < 7000*time.Second+9*75*time.Second {
		t.Errorf("kernel deadline %+v, want ≥ 7000 s + 9 × 75 s, keepalive, a lower bound", d)
	}
}

// TestFastKeepaliveLeftToKernel: a socket with TCP_KEEPIDLE 2 s,
// TCP_KEEPINTVL 1 s, TCP_KEEPCNT 3 is no idle suspect when its own settings
// are known (its kernel ends a dead peer in 5 s), is one when only the
// namespace's sysctls are (7200 s: probing it is harmless), still gets
// keepalive_failing when its peer dies, and is then aborted by its kernel.
func TestFastKeepaliveLeftToKernel(t *testing.T) {
	n, w := keepaliveSetup(t)
	w.readSysctls(t)
	server, client := keepalivePair(t, n)
	setsockopt(t, server, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 2)
	setsockopt(t, server, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 1)
	setsockopt(t, server, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 3)
	exchange(t, server, client)
	time.Sleep(1500 * time.Millisecond) // idle past the threshold, healthy

	got, s := w.scan(t, server)
	if got != reasons(tracker.ReasonIdle) || s.Timer != inventory.TimerKeepalive {
		t.Fatalf("own settings unknown: %q timer %d; want idle (the sysctls say 7200 s)", got, s.Timer)
	}
	// What the BPF iterator reads from tcp_sock; here the test says it.
	w.tr.SetKeepalive(s.Key(), tracker.KeepaliveSettings{Time: 2 * time.Second, Intvl: time.Second, Probes: 3})
	for range 5 { // across the keepalive cycle, healthy: never a suspect
		if got, s := w.scan(t, server); !got.Empty() {
			t.Fatalf("own settings known: %q; want none: %s", got, describe(&s))
		}
		time.Sleep(500 * time.Millisecond)
	}
	n.GoSilent(t)
	w.waitFor(t, server, reasons(tracker.ReasonKeepaliveFailing), 6*time.Second)
	// The kernel ends it: the owner's read fails with ETIMEDOUT.
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := server.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("the server's read after its peer died: %v, want ETIMEDOUT from its keepalive", err)
	}
}
