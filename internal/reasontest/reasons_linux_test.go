package reasontest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/tracker"
)

// cfg has thresholds short enough for tests that take seconds.
var cfg = tracker.Config{
	Idle: time.Second, CloseWait: time.Second, Stall: time.Second,
	FinWait2: time.Second, LastAck: time.Second, RetransBackoff: 2,
}

// watcher scans one namespace the way the daemon does: a complete sock_diag
// dump, every socket observed, then EndNamespace.
type watcher struct {
	ns   *testnet.NS
	conn *inventory.Conn
	tr   *tracker.Tracker
}

func newWatcher(t *testing.T, ns *testnet.NS) *watcher {
	t.Helper()
	c, err := inventory.DialPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &watcher{ns: ns, conn: c, tr: tracker.New(cfg)}
}

// scan observes every socket of the namespace and returns what the tracker
// said about the one with c's 4-tuple (seen side: c is a local socket).
func (w *watcher) scan(t *testing.T, c net.Conn) (tracker.Reasons, inventory.Socket) {
	t.Helper()
	local, remote := testnet.Tuple(c)
	var found inventory.Socket
	var got tracker.Reasons
	ok := false
	if _, err := w.conn.Dump(w.ns.Inode, inventory.AllStates, func(s *inventory.Socket) error {
		// The time is taken after the kernel wrote s: tcp_info's clocks
		// count up to the dump, and a scan-start time would age the
		// socket by the dump's delay.
		rs := w.tr.Observe(time.Now(), s)
		if unmap(s.Local) == local && unmap(s.Remote) == remote {
			found, got, ok = *s, rs, true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w.tr.EndNamespace(time.Now(), w.ns.Inode)
	if !ok {
		t.Fatalf("%v-%v is not in the dump of %s", local, remote, w.ns.Name)
	}
	return got, found
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// waitFor scans every 100 ms until the socket has exactly want, for at most
// within; it fails the test with the last observation otherwise.
func (w *watcher) waitFor(t *testing.T, c net.Conn, want tracker.Reasons, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var got tracker.Reasons
	var s inventory.Socket
	for time.Since(start) < within {
		if got, s = w.scan(t, c); got == want {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("after %v: reasons %q, want %q; socket %s", within, got, want, describe(&s))
	return 0
}

func describe(s *inventory.Socket) string {
	acked, _ := s.Info.BytesAcked()
	wnd, _ := s.Info.SndWnd()
	return fmt.Sprintf("%v timer %d retrans %d tcpi_retransmits %d backoff %d probes %d unacked %d bytes_acked %d snd_wnd %d wqueue %d last_data_recv %d last_data_sent %d last_ack_recv %d",
		s.State, s.Timer, s.Retrans, s.Info.Retransmits, s.Info.Backoff, s.Info.Probes, s.Info.Unacked, acked, wnd, s.WQueue,
		s.Info.LastDataRecv, s.Info.LastDataSent, s.Info.LastAckRecv)
}

func reasons(r ...tracker.Reason) tracker.Reasons {
	var out tracker.Reasons
	for _, x := range r {
		out = out.With(x)
	}
	return out
}

// pair returns a connection through the router whose server end (the socket
// the tracker watches) has keepalive off, as most applications leave it.
func pair(t *testing.T, n *testnet.Net, network string) (server, client *net.TCPConn) {
	t.Helper()
	s, c := n.Pair(t, network)
	server, client = s.(*net.TCPConn), c.(*net.TCPConn)
	if err := server.SetKeepAlive(false); err != nil {
		t.Fatal(err)
	}
	return server, client
}

// setup starts a parallel test on a fresh test network: a watcher on the
// server's namespace and one connection (keepalive off on the server end),
// after one exchange of data each way when talk is set.
func setup(t *testing.T, network string, talk bool) (n *testnet.Net, w *watcher, server, client *net.TCPConn) {
	t.Helper()
	t.Parallel()
	n = testnet.New(t)
	w = newWatcher(t, n.Server)
	server, client = pair(t, n, network)
	if talk {
		exchange(t, server, client)
	}
	return n, w, server, client
}

func exchange(t *testing.T, server, client net.Conn) {
	t.Helper()
	buf := make([]byte, 4)
	for _, p := range [][2]net.Conn{{client, server}, {server, client}} {
		if _, err := p[0].Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		p[1].SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(p[1], buf); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIdle(t *testing.T) {
	t.Parallel()
	n := testnet.New(t)
	w := newWatcher(t, n.Server)
	for _, network := range []string{"tcp4", "tcp6"} {
		server, client := pair(t, n, network)
		exchange(t, server, client)
		last := time.Now()
		// Right after traffic it is not idle (unless this machine stalled for
		// longer than the threshold: then the kernel's clocks say so too).
		if got, s := w.scan(t, server); !got.Empty() && min(s.Info.LastDataRecv, s.Info.LastDataSent) < uint32(cfg.Idle.Milliseconds()) {
			t.Fatalf("%s: right after traffic: %q: %s", network, got, describe(&s))
		}
		w.waitFor(t, server, reasons(tracker.ReasonIdle), 3*time.Second)
		if quiet := time.Since(last); quiet < cfg.Idle {
			t.Errorf("%s: idle after %v of quiet, before the %v threshold", network, quiet, cfg.Idle)
		}
		exchange(t, server, client)
		if got, s := w.scan(t, server); !got.Empty() && min(s.Info.LastDataRecv, s.Info.LastDataSent) < uint32(cfg.Idle.Milliseconds()) {
			t.Errorf("%s: after new traffic: %q", network, got)
		}
	}
}

func TestBusyIsHealthy(t *testing.T) {
	_, w, server, client := setup(t, "tcp4", false)
	done := make(chan error, 1)
	stop := time.Now().Add(2500 * time.Millisecond)
	go func() { // echo
		_, err := io.Copy(server, server)
		done <- err
	}()
	buf := make([]byte, 16<<10)
	scans := 0
	for time.Now().Before(stop) {
		for range 50 {
			if _, err := client.Write(buf); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(client, buf); err != nil {
				t.Fatal(err)
			}
		}
		if got, s := w.scan(t, server); !got.Empty() {
			t.Fatalf("a busy echo connection got %q (timer %d retrans %d)", got, s.Timer, s.Retrans)
		}
		scans++
	}
	client.CloseWrite()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if scans < 5 || w.tr.Len() != 0 {
		t.Errorf("%d scans, tracker remembers %d sockets; want ≥ 5 and 0", scans, w.tr.Len())
	}
}

func TestCloseWait(t *testing.T) {
	n, w, server, client := setup(t, "tcp6", true)
	closed := time.Now()
	client.Close() // the peer closes; the owner (server) never does
	_, s := w.scan(t, server)
	w.waitFor(t, server, reasons(tracker.ReasonCloseWait), 3*time.Second)
	if age := time.Since(closed); age < cfg.CloseWait {
		t.Errorf("close_wait %v after the peer closed, before the %v threshold", age, cfg.CloseWait)
	}

	// A fresh tracker (ghostd restarted) sees the leak at once: its age is at
	// least tcpi_last_ack_recv, and never more than the real age.
	w2 := newWatcher(t, n.Server)
	got, _ := w2.scan(t, server)
	if got != reasons(tracker.ReasonCloseWait) {
		t.Errorf("first sight of a %v-old CLOSE_WAIT: %q, want close_wait", time.Since(closed), got)
	}
	e, _ := w2.tr.Get(s.Key())
	if e.StateSince.Before(closed.Add(-50 * time.Millisecond)) {
		t.Errorf("StateSince %v is before the peer closed (%v): the lower bound is wrong", e.StateSince, closed)
	}
}

// fill writes from the owner until its send buffer is full; the peer never reads.
func fill(t *testing.T, server *net.TCPConn) {
	t.Helper()
	chunk := make([]byte, 64<<10)
	server.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	for range 1000 {
		if _, err := server.Write(chunk); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("the peer's window never closed")
}

func TestZeroWindow(t *testing.T) {
	t.Parallel()
	n := testnet.New(t)
	w := newWatcher(t, n.Server)
	// With its default buffer the peer's window closes cleanly and the owner
	// probes it from the persist timer. With a tiny buffer the peer shuts its
	// window on data already in flight, and the owner probes from the
	// retransmit timer (timer 1, backoff growing, no retransmit counted).
	for _, tc := range []struct {
		name  string
		rcv   int
		timer inventory.Timer
	}{{"persist timer", 0, inventory.TimerZeroWindow}, {"shrunk window", 4096, inventory.TimerRetransmit}} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := pair(t, n, "tcp4")
			if tc.rcv > 0 {
				if err := client.SetReadBuffer(tc.rcv); err != nil {
					t.Fatal(err)
				}
			}
			fill(t, server)
			took := w.waitFor(t, server, reasons(tracker.ReasonZeroWindow), 4*time.Second)
			_, s := w.scan(t, server)
			t.Logf("zero_window %v after the writes stopped: %s", took, describe(&s))
			if s.Timer != tc.timer {
				t.Errorf("timer %d, want %d", s.Timer, tc.timer)
			}
			// The peer reads: the window opens and the stall ends.
			go io.Copy(io.Discard, client)
			w.waitFor(t, server, 0, 5*time.Second)
		})
	}
}

// TestZeroWindowPeerGone: a peer that vanishes behind a zero window leaves
// the window probes unanswered: retransmitting, not a stall.
func TestZeroWindowPeerGone(t *testing.T) {
	n, w, server, _ := setup(t, "tcp4", false)
	fill(t, server)
	w.waitFor(t, server, reasons(tracker.ReasonZeroWindow), 4*time.Second)
	n.GoSilent(t)
	took := w.waitFor(t, server, reasons(tracker.ReasonRetransmitting), 8*time.Second)
	_, s := w.scan(t, server)
	t.Logf("retransmitting %v after the peer went silent: %s", took, describe(&s))
}

func TestRetransmitting(t *testing.T) {
	n, w, server, client := setup(t, "tcp6", true)
	n.DropFromClient(t, client) // the peer's ACKs are lost
	if _, err := server.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	took := w.waitFor(t, server, reasons(tracker.ReasonRetransmitting), 4*time.Second)
	t.Logf("retransmitting after %v", took)
	n.Heal(t) // the next retransmission is acknowledged: progress ends it
	w.waitFor(t, server, 0, 6*time.Second)
	if w.tr.Len() != 0 {
		t.Errorf("the tracker still remembers %d sockets after recovery", w.tr.Len())
	}
}

func TestKeepaliveFailing(t *testing.T) {
	n, w, server, _ := setup(t, "tcp4", true)
	if err := server.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 10}); err != nil {
		t.Fatal(err)
	}
	if got, s := w.scan(t, server); !got.Empty() || s.Timer != inventory.TimerKeepalive {
		t.Fatalf("with keepalive armed: %q timer %d; want no reason, keepalive timer", got, s.Timer)
	}
	n.GoSilent(t)
	w.waitFor(t, server, reasons(tracker.ReasonKeepaliveFailing), 5*time.Second)
}

func TestFinWait2(t *testing.T) {
	_, w, server, client := setup(t, "tcp4", true)
	if err := server.CloseWrite(); err != nil { // owner half-closes; the peer never closes
		t.Fatal(err)
	}
	w.waitFor(t, server, reasons(tracker.ReasonFinWait2), 3*time.Second)
	_ = client
}

func TestLastAck(t *testing.T) {
	n, w, server, client := setup(t, "tcp6", true)
	local, remote := testnet.Tuple(server)
	client.Close()
	w.waitFor(t, server, 0, time.Second) // CLOSE_WAIT, younger than the threshold
	n.GoSilent(t)                        // the peer never acknowledges our FIN
	server.Close()
	// The orphaned socket stays in the table; find it by its tuple.
	probe := &tupleConn{local: local, remote: remote}
	w.waitFor(t, probe, reasons(tracker.ReasonLastAck), 3*time.Second)
}

// tupleConn names a socket by its 4-tuple after its owner closed it.
type tupleConn struct {
	net.Conn
	local, remote netip.AddrPort
}

func (c *tupleConn) LocalAddr() net.Addr  { return net.TCPAddrFromAddrPort(c.local) }
func (c *tupleConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

// TestMiddleboxForgot: the router forgets the flow (nf_conntrack_tcp_loose=0
// and `ct state invalid drop`), so the owner's data never reaches the peer.
func TestMiddleboxForgot(t *testing.T) {
	n, w, server, _ := setup(t, "tcp4", true)
	n.ForgetFlow(t, server)
	drops := n.InvalidDrops(t)
	if _, err := server.Write([]byte("still there?")); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, server, reasons(tracker.ReasonRetransmitting), 4*time.Second)
	if n.InvalidDrops(t) == drops {
		t.Error("the router dropped nothing as INVALID")
	}
}
