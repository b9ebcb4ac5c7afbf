package kill

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// ownerEnv makes the test binary a socket owner (see runOwner).
const ownerEnv = "GHOSTD_KILL_OWNER"

// runOwner is the child process that owns a socket on fd 3, so that the
// killer has to borrow it across processes. It answers commands on stdin, one
// line each: "read" (block in read), "write" (write one byte), "exit".
func runOwner() int {
	sock := os.NewFile(3, "socket")
	out := bufio.NewWriter(os.Stdout)
	say := func(s string) { out.WriteString(s + "\n"); out.Flush() }
	say("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "read":
			n, err := sock.Read(make([]byte, 64))
			say("read: " + result(n, err))
		case "write":
			n, err := sock.Write([]byte{'x'})
			say("write: " + result(n, err))
		case "exit":
			return 0
		}
	}
	return 0
}

func result(n int, err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return fmt.Sprintf("%d bytes", n)
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// owner is a running child process holding one socket.
type owner struct {
	*testnet.Child
	lines chan string
}

// startOwner hands c's socket to a child process and closes it here, so the
// child holds the only descriptor.
func startOwner(t *testing.T, c net.Conn) *owner {
	t.Helper()
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), ownerEnv+"=1")
	cmd.ExtraFiles = []*os.File{f}
	// No grace: the owner may be blocked in a read when the test ends.
	o := &owner{Child: testnet.StartChild(t, cmd, 0), lines: make(chan string, 8)}
	f.Close()
	c.Close()
	go func() {
		for {
			l, err := o.ReadLine()
			if err != nil {
				break
			}
			o.lines <- l
		}
		close(o.lines)
	}()
	if got := o.next(t, 10*time.Second); got != "ready" {
		t.Fatalf("owner said %q, want ready", got)
	}
	return o
}

func (o *owner) send(t *testing.T, cmd string) {
	t.Helper()
	if err := o.Send(cmd); err != nil {
		t.Fatal(err)
	}
}

func (o *owner) next(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-o.lines:
		if !ok {
			t.Fatal("owner exited")
		}
		return l
	case <-time.After(timeout):
		t.Fatalf("owner said nothing within %s", timeout)
	}
	return ""
}

// connOps is SocketOps on one namespace's sock_diag connection, as the
// daemon's inventory scanner provides it for every namespace.
type connOps struct{ c *inventory.Conn }

func (o connOps) Lookup(s *inventory.Socket) (inventory.Socket, bool, error) {
	return o.c.Lookup(s.Netns, s)
}

func (o connOps) Destroy(s *inventory.Socket) error { return o.c.Destroy(s) }

// lab is one namespace of ours with a loopback connection whose server end
// is owned by a child process.
type lab struct {
	ns     *testnet.NS
	conn   *inventory.Conn
	client *net.TCPConn
	owner  *owner
	sock   inventory.Socket // the owner's socket as the inventory sees it
	// quiet is a moment after the connection's last segment: a ghost
	// confirmed then has taken no ACK since.
	quiet time.Time
}

func newLab(t *testing.T) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, pidfd_getfd and SOCK_DESTROY")
	}
	ns := testnet.NewNS(t, "kl")
	l := ns.Listen(t, "tcp4", "127.0.0.1:0")
	client := ns.Dial(t, "tcp4", l.Addr().String()).(*net.TCPConn)
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	conn, err := inventory.DialPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	lb := &lab{ns: ns, conn: conn, client: client}
	lb.sock = lb.find(t, server.LocalAddr().String(), server.RemoteAddr().String())
	lb.owner = startOwner(t, server)
	// tcpi_last_ack_recv counts whole jiffies: leave a few behind the
	// handshake's last ACK.
	time.Sleep(50 * time.Millisecond)
	lb.quiet = time.Now()
	return lb
}

// find dumps the namespace for the socket with this 4-tuple.
func (lb *lab) find(t *testing.T, local, remote string) inventory.Socket {
	t.Helper()
	var found inventory.Socket
	ok := false
	_, err := lb.conn.Dump(lb.ns.Inode, inventory.AllStates, func(s *inventory.Socket) error {
		if s.Local.String() == local && s.Remote.String() == remote {
			found, ok = *s, true
		}
		return nil
	})
	if err != nil || !ok {
		t.Fatalf("socket %s %s not in the dump (err %v)", local, remote, err)
	}
	return found
}

func (lb *lab) candidate(reasons tracker.Reasons, v probe.Verdict) Candidate {
	return Candidate{
		Socket:     lb.sock,
		Netns:      lb.ns.Name,
		PID:        lb.owner.Pid(),
		Comm:       "kill.test",
		Reasons:    reasons,
		Verdict:    v,
		Confirmed:  true,
		GhostSince: lb.quiet,
	}
}

// countRSTs counts TCP RST segments in the namespace (all on loopback).
func (lb *lab) countRSTs(t *testing.T) func() uint64 {
	t.Helper()
	lb.ns.Nft(t, `table inet ex_rst {
	chain out {
		type filter hook output priority 0; policy accept;
		tcp flags & rst == rst counter
	}
}
`)
	return func() uint64 {
		out := lb.ns.Exec(t, "nft", "list", "table", "inet", "ex_rst")
		var n uint64
		if i := strings.Index(out, "counter packets "); i >= 0 {
			fmt.Sscanf(out[i+len("counter packets "):], "%d", &n)
		}
		return n
	}
}

func TestKillDestroyLive(t *testing.T) {
	lb := newLab(t)
	rsts := lb.countRSTs(t)
	lb.owner.send(t, "read") // blocks until the socket dies
	p := enabled()
	p.MinAge = 0
	k := New(p, connOps{lb.conn}, nil, nil, nil)
	k.SetReprober(reprobeAs(probe.Reset))
	recs := k.Apply(context.Background(), []Candidate{lb.candidate(tracker.Reasons(0).With(tracker.ReasonIdle), probe.Reset)})
	if recs[0].Skipped != "" || recs[0].Err != nil {
		if errors.Is(recs[0].Err, inventory.ErrDestroyUnsupported) {
			t.Skipf("kernel without CONFIG_INET_DIAG_DESTROY: %v", recs[0].Err)
		}
		t.Fatalf("Apply: %+v", recs[0])
	}
	if got := lb.owner.next(t, 5*time.Second); got != "read: ECONNABORTED" {
		t.Errorf("owner: %q, want read: ECONNABORTED", got)
	}
	lb.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := lb.client.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("peer read: %v, want ECONNRESET", err)
	}
	if n := rsts(); n != 1 {
		t.Errorf("%d RST segments, want the one SOCK_DESTROY sends", n)
	}
	// The socket is gone: a second pass skips it after the re-check.
	recs = k.Apply(context.Background(), []Candidate{lb.candidate(tracker.Reasons(0).With(tracker.ReasonIdle), probe.Reset)})
	if recs[0].Skipped != "gone" {
		t.Errorf("second Apply: %+v, want skipped gone", recs[0])
	}
}

func TestKillKeepaliveLive(t *testing.T) {
	lb := newLab(t)
	// Silence the peer: the client's segments (its keepalive ACKs) are dropped.
	cport := lb.client.LocalAddr().(*net.TCPAddr).Port
	lb.ns.Nft(t, fmt.Sprintf(`table inet ex_silent {
	chain out {
		type filter hook output priority 0; policy accept;
		tcp sport %d counter drop
	}
}
`, cport))
	lb.owner.send(t, "read")
	p := enabled()
	p.MinAge = 0
	p.Mode = ModeKeepalive
	p.Keepalive = Keepalive{Idle: time.Second, Interval: time.Second, Count: 2}
	p.UserTimeout = 3 * time.Second
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	k := New(p, connOps{lb.conn}, nil, nil, nil)
	k.SetReprober(reprobeAs(probe.Silent))
	start := time.Now()
	recs := k.Apply(context.Background(), []Candidate{lb.candidate(tracker.Reasons(0).With(tracker.ReasonIdle), probe.Silent)})
	if recs[0].Skipped != "" || recs[0].Err != nil {
		t.Fatalf("Apply: %+v", recs[0])
	}
	// The options are on the owner's socket (read back through a borrowed fd).
	err := withBorrowedSocket(lb.owner.Pid(), lb.sock.Inode, lb.sock.Cookie, func(fd int) error {
		for _, o := range []struct {
			level, opt, want int
			name             string
		}{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, "SO_KEEPALIVE"},
			{unix.SOL_TCP, unix.TCP_KEEPIDLE, 1, "TCP_KEEPIDLE"},
			{unix.SOL_TCP, unix.TCP_KEEPINTVL, 1, "TCP_KEEPINTVL"},
			{unix.SOL_TCP, unix.TCP_KEEPCNT, 2, "TCP_KEEPCNT"},
			{unix.SOL_TCP, unix.TCP_USER_TIMEOUT, 3000, "TCP_USER_TIMEOUT"},
		} {
			v, err := unix.GetsockoptInt(fd, o.level, o.opt)
			if err != nil {
				return err
			}
			if v != o.want {
				t.Errorf("%s = %d, want %d", o.name, v, o.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if got := lb.owner.next(t, 10*time.Second); got != "read: ETIMEDOUT" {
		t.Errorf("owner: %q, want read: ETIMEDOUT", got)
	}
	t.Logf("owner saw ETIMEDOUT %s after arming keepalive", time.Since(start).Round(10*time.Millisecond))
}

// A slow peer answers a probe after the prober stopped waiting: the verdict
// came out silent, but the answer reached the socket. The socket's own
// keepalive probe, answered by the live peer with the same duplicate ACK,
// stands in for that late answer here: the kill is refused and the
// connection lives on.
func TestKillRefusesAfterLateAnswer(t *testing.T) {
	lb := newLab(t)
	err := withBorrowedSocket(lb.owner.Pid(), lb.sock.Inode, lb.sock.Cookie, func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_KEEPIDLE, 1); err != nil {
			return err
		}
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	c := lb.candidate(tracker.Reasons(0).With(tracker.ReasonIdle), probe.Silent)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := lb.find(t, lb.sock.Local.String(), lb.sock.Remote.String())
		ack := time.Now().Add(-time.Duration(s.Info.LastAckRecv) * time.Millisecond)
		if ack.After(c.GhostSince.Add(500 * time.Millisecond)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answered keepalive within 5s (last ACK %s ago)", time.Duration(s.Info.LastAckRecv)*time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p := enabled()
	p.MinAge = 0
	k := New(p, connOps{lb.conn}, nil, nil, nil)
	k.SetReprober(reprobeAs(probe.Silent))
	recs := k.Apply(context.Background(), []Candidate{c})
	if !strings.HasPrefix(recs[0].Skipped, "an ACK arrived") {
		t.Errorf("Apply: %+v, want skipped for the late ACK", recs[0])
	}
	if s := lb.find(t, lb.sock.Local.String(), lb.sock.Remote.String()); s.Cookie != lb.sock.Cookie || s.State != inventory.StateEstablished {
		t.Errorf("socket now %s cookie %d, want the same one ESTABLISHED", s.State, s.Cookie)
	}
}

// peerCloses half-closes the connection from the peer's side, waits until
// the owner's socket is in CLOSE_WAIT and returns when it got there.
func (lb *lab) peerCloses(t *testing.T) time.Time {
	t.Helper()
	if err := lb.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for lb.sock.State != inventory.StateCloseWait && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		lb.sock = lb.find(t, lb.sock.Local.String(), lb.sock.Remote.String())
	}
	if lb.sock.State != inventory.StateCloseWait {
		t.Fatalf("owner socket in %s, want CLOSE_WAIT", lb.sock.State)
	}
	return time.Now()
}

func TestKillShutdownCloseWaitLive(t *testing.T) {
	lb := newLab(t)
	rsts := lb.countRSTs(t)
	// The peer closes its side; the owner leaks the socket in CLOSE_WAIT.
	closedAt := lb.peerCloses(t)
	p := enabled()
	p.MinAge = 0
	k := New(p, connOps{lb.conn}, nil, nil, nil)
	c := lb.candidate(tracker.Reasons(0).With(tracker.ReasonCloseWait), probe.Unprobed)
	c.Confirmed = false
	c.GhostSince = closedAt // the tracker's StateSince
	time.Sleep(time.Second) // the owner stays quiet after the peer's FIN
	if recs := k.Apply(context.Background(), []Candidate{c}); recs[0].Skipped != "close_wait leaks not enabled" {
		t.Fatalf("without CloseWait: %+v", recs[0])
	}
	p.CloseWait = true
	k = New(p, connOps{lb.conn}, nil, nil, nil)
	recs := k.Apply(context.Background(), []Candidate{c})
	if recs[0].Skipped != "" || recs[0].Err != nil || recs[0].Mode != ModeShutdown {
		t.Fatalf("Apply: %+v", recs[0])
	}
	lb.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := lb.client.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("peer read: %d, %v; want a clean EOF", n, err)
	}
	lb.owner.send(t, "write")
	if got := lb.owner.next(t, 5*time.Second); got != "write: EPIPE" {
		t.Errorf("owner: %q, want write: EPIPE", got)
	}
	if n := rsts(); n != 0 {
		t.Errorf("%d RST segments, want none", n)
	}
}

// A server still answering a half-closed request is not a leak: while its
// owner writes after the peer's FIN, shutdown is refused and the peer gets
// every byte.
func TestKillShutdownSparesCloseWaitWriter(t *testing.T) {
	lb := newLab(t)
	closedAt := lb.peerCloses(t)
	time.Sleep(time.Second)
	lb.owner.send(t, "write") // the answer to the half-closed request
	if got := lb.owner.next(t, 5*time.Second); got != "write: 1 bytes" {
		t.Fatalf("owner: %q, want write: 1 bytes", got)
	}
	// The scan sees the socket after the answer was sent and acknowledged:
	// no bytes move between it and the kill's re-check.
	time.Sleep(200 * time.Millisecond)
	lb.sock = lb.find(t, lb.sock.Local.String(), lb.sock.Remote.String())
	p := enabled()
	p.MinAge, p.CloseWait = 0, true
	k := New(p, connOps{lb.conn}, nil, nil, nil)
	c := lb.candidate(tracker.Reasons(0).With(tracker.ReasonCloseWait), probe.Unprobed)
	c.Confirmed, c.GhostSince = false, closedAt
	recs := k.Apply(context.Background(), []Candidate{c})
	if !strings.Contains(recs[0].Skipped, "CLOSE_WAIT socket sent data") {
		t.Fatalf("Apply on a CLOSE_WAIT socket that is still answering: %+v, want skipped", recs[0])
	}
	lb.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := lb.client.Read(make([]byte, 64)); n == 0 || err != nil {
		t.Errorf("peer read: %d, %v; want the owner's answer", n, err)
	}
}

func TestBorrowWrongInode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: pidfd_getfd")
	}
	err := withBorrowedSocket(os.Getpid(), 1, 1, func(int) error { return nil })
	if !errors.Is(err, unix.ENOENT) {
		t.Errorf("borrow of a socket we do not hold: %v, want ENOENT", err)
	}
}

// TestBorrowChecksCookie: an fd whose socket has the inode number asked for
// but another cookie is not touched. Inode numbers wrap; cookies do not.
func TestBorrowChecksCookie(t *testing.T) {
	lb := newLab(t)
	called := false
	err := withBorrowedSocket(lb.owner.Pid(), lb.sock.Inode, lb.sock.Cookie+1, func(int) error { called = true; return nil })
	if !errors.Is(err, unix.ESTALE) || called {
		t.Errorf("borrow under another cookie: %v, fn called %v; want ESTALE and no call", err, called)
	}
	err = withBorrowedSocket(lb.owner.Pid(), lb.sock.Inode, lb.sock.Cookie, func(int) error { called = true; return nil })
	if err != nil || !called {
		t.Errorf("borrow of the socket itself: %v, fn called %v", err, called)
	}
}
