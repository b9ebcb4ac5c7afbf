package probe

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

// aggressiveKeepalive arms the kernel's keepalive on c: 2 s idle, 1 s
// interval, 1 probe, so a single unanswered keepalive aborts the connection.
func aggressiveKeepalive(t testing.TB, c net.Conn) {
	t.Helper()
	rawFd(t, c, func(fd int) {
		for _, o := range [][3]int{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 2},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 1},
		} {
			if err := unix.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
				t.Fatalf("setsockopt %v: %v", o, err)
			}
		}
	})
}

// soError returns the socket's pending error (SO_ERROR), without clearing
// anything the owner would see differently: the test owns both ends.
func soError(t testing.TB, c net.Conn) int {
	t.Helper()
	var v int
	rawFd(t, c, func(fd int) {
		var err error
		if v, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil {
			t.Fatal(err)
		}
	})
	return v
}

// TestProbingNeverStarvesKernel probes, as often as the configuration
// allows and for 2 minutes, server sockets whose own kernel probes the same
// peer: idle sockets with keepalive 2 s × 1 probe (one unanswered keepalive
// aborts them), and zero-window sockets under the persist timer with
// tcp_retries2=3. The peer answers one out-of-window segment per socket per
// 500 ms, and ghostd's probes and the kernel's are both out-of-window
// segments, so ghostd can take the answer the kernel's probe needed. None
// may be aborted: the answer to ghostd's probe comes back to the probed
// socket itself (it carries the connection's 4-tuple) as an acceptable
// duplicate ACK, and the kernel's tcp_ack resets icsk_probes_out and
// rcv_tstamp on it, just as the answer to its own probe would. Control
// pairs whose peer stops answering altogether must be aborted in the same
// time, or the test proves nothing.
func TestProbingNeverStarvesKernel(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("runs for 2 minutes")
	}
	seq := prSeqReader(t)
	n := testnet.New(t)
	n.Server.Sysctl(t, "net.ipv4.tcp_retries2", "3")
	const run = 2 * time.Minute

	type pair struct {
		name           string
		server, client net.Conn
		zeroWindow     bool
		control        bool // the peer stops answering; never probed
	}
	var pairs []*pair
	for i := range 6 {
		server, client := n.Pair(t, networks[i%2])
		exchange(t, server, client)
		p := &pair{name: "keepalive", server: server, client: client, control: i >= 4}
		if i >= 2 && i < 4 {
			p.name, p.zeroWindow = "zero window", true
		}
		pairs = append(pairs, p)
	}
	for i := range 2 { // zero-window controls
		server, client := n.Pair(t, networks[i%2])
		exchange(t, server, client)
		pairs = append(pairs, &pair{name: "zero window", server: server, client: client, zeroWindow: true, control: true})
	}
	var targets []Target
	for _, p := range pairs {
		if p.zeroWindow {
			fillWindow(t, p.server)
		} else {
			aggressiveKeepalive(t, p.server)
		}
		if p.control {
			n.DropFromClient(t, p.client)
			continue
		}
		targets = append(targets, targetOf(t, n, p.server))
	}

	cfg := fastConfig()
	cfg.Attempts = 10
	cfg.Timeout = MinInterval
	cfg.Rate = 1000
	cfg.Burst = 100
	cfg.PerHost = 64
	skippedBefore := netstat(t, n.Client, "TCPACKSkippedSeq")
	pr := New(cfg, seq, nil)
	defer pr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	var rounds, sent, alive int
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			for _, r := range pr.ProbeAll(ctx, targets) {
				mu.Lock()
				sent += r.Sent
				if r.Verdict == Alive {
					alive++
				}
				mu.Unlock()
			}
			rounds++
		}
	})
	wg.Wait()
	skipped := netstat(t, n.Client, "TCPACKSkippedSeq") - skippedBefore
	t.Logf("%d rounds, %d probes sent, %d alive verdicts over %d targets in %s; the peer withheld %d answers (TCPACKSkippedSeq)",
		rounds, sent, alive, len(targets), run, skipped)
	// The contention is real: ghostd's probes come faster than the peer's
	// answer budget, so the peer withheld many answers.
	if skipped < 100 {
		t.Errorf("the peer withheld only %d answers: ghostd did not probe as fast as the budget allows", skipped)
	}

	for i, p := range pairs {
		st, serr := tcpState(t, p.server), soError(t, p.server)
		t.Logf("pair %d (%s, control %v): state %d, SO_ERROR %d", i, p.name, p.control, st, serr)
		if p.control {
			if st == 1 {
				t.Errorf("pair %d (%s control): the peer never answered, yet the kernel kept the connection: the scenario does not exercise the kernel's timer", i, p.name)
			}
			continue
		}
		if st != 1 || serr != 0 {
			t.Errorf("pair %d (%s): the kernel gave up while ghostd probed it: state %d, SO_ERROR %d (%s)", i, p.name, st, serr, unix.ErrnoName(unix.Errno(serr)))
			continue
		}
		if p.zeroWindow { // drain the window, then both ways still work
			p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
			go func() { io.Copy(io.Discard, p.client) }()
			p.server.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := p.server.Write([]byte("after the stall")); err != nil {
				t.Errorf("pair %d (%s): write after the stall: %v", i, p.name, err)
			}
			continue
		}
		exchange(t, p.server, p.client)
	}
}
