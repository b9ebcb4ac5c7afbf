package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

// sockopts are the options a probe must never change on the probed socket.
type sockopts struct {
	KeepAlive, KeepIdle, KeepIntvl, KeepCnt, UserTimeout, RcvBuf, SndBuf, NoDelay int
	TotalRetrans                                                                  uint32
}

func readSockopts(t testing.TB, c net.Conn) sockopts {
	t.Helper()
	var o sockopts
	rawFd(t, c, func(fd int) {
		for _, q := range []struct {
			level, opt int
			dst        *int
		}{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, &o.KeepAlive},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, &o.KeepIdle},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, &o.KeepIntvl},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, &o.KeepCnt},
			{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, &o.UserTimeout},
			{unix.SOL_SOCKET, unix.SO_RCVBUF, &o.RcvBuf},
			{unix.SOL_SOCKET, unix.SO_SNDBUF, &o.SndBuf},
			{unix.IPPROTO_TCP, unix.TCP_NODELAY, &o.NoDelay},
		} {
			v, err := unix.GetsockoptInt(fd, q.level, q.opt)
			if err != nil {
				t.Fatalf("getsockopt %d/%d: %v", q.level, q.opt, err)
			}
			*q.dst = v
		}
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			t.Fatalf("TCP_INFO: %v", err)
		}
		o.TotalRetrans = info.Total_retrans
	})
	return o
}

// TestNoDisturbance probes healthy connections, idle and busy, through the
// conntrack router for 20 rounds, and checks that neither application saw
// an error, the connections still carry data both ways, no socket option
// changed and nothing was retransmitted on the idle ones. Busy connections
// on this shared 2-core machine occasionally retransmit on their own (a
// tail-loss probe when an ACK is late under load; the peer then reports a
// DSACK), so for them an unprobed busy control pair runs alongside and a
// probed busy connection may not retransmit more than the control plus 2:
// probes that caused retransmissions would cause them every round.
func TestNoDisturbance(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	type pair struct {
		server, client net.Conn
		busy, probed   bool
	}
	var pairs []pair
	var targets []Target
	for _, network := range networks {
		for _, kind := range []struct{ busy, probed bool }{{false, true}, {true, true}, {true, false}} {
			s, c := n.Pair(t, network)
			s.(*net.TCPConn).SetKeepAlivePeriod(42 * time.Second) // a non-default value to watch
			// Fix the buffer sizes: left alone, the kernel autotunes a busy
			// connection's SO_RCVBUF/SO_SNDBUF, and the comparison would
			// catch the kernel rather than the prober.
			for _, c := range []net.Conn{s, c} {
				c.(*net.TCPConn).SetReadBuffer(128 << 10)
				c.(*net.TCPConn).SetWriteBuffer(128 << 10)
			}
			pairs = append(pairs, pair{s, c, kind.busy, kind.probed})
			if kind.probed {
				targets = append(targets, targetOf(t, n, s))
			}
		}
	}
	before := map[net.Conn]sockopts{}
	for _, p := range pairs {
		before[p.server], before[p.client] = readSockopts(t, p.server), readSockopts(t, p.client)
	}
	var stops []func()
	for _, p := range pairs {
		if p.busy {
			stops = append(stops, busyChecked(t, p.server, p.client))
		}
	}
	pr := New(fastConfig(), seq, nil)
	defer pr.Close()
	const rounds = 20
	sent, replies := 0, 0
	for round := range rounds {
		for i, r := range pr.ProbeAll(context.Background(), targets) {
			if r.Verdict != Alive || r.Mode != InWindow {
				t.Fatalf("round %d target %d: %+v", round, i, r)
			}
			sent, replies = sent+r.Sent, replies+r.Replies
		}
	}
	for _, stop := range stops {
		stop()
	}
	controlRetrans := map[bool]uint32{} // by IPv4-ness
	retrans := func(c net.Conn) uint32 { return readSockopts(t, c).TotalRetrans - before[c].TotalRetrans }
	for _, p := range pairs {
		if !p.probed {
			v4 := p.server.LocalAddr().(*net.TCPAddr).IP.To4() != nil
			controlRetrans[v4] = max(retrans(p.server), retrans(p.client))
		}
	}
	for i, p := range pairs {
		exchange(t, p.server, p.client)
		for _, c := range []net.Conn{p.server, p.client} {
			after := readSockopts(t, c)
			got := after.TotalRetrans - before[c].TotalRetrans
			v4 := c.LocalAddr().(*net.TCPAddr).IP.To4() != nil
			t.Logf("pair %d busy=%v probed=%v %s: %d retransmits", i, p.busy, p.probed, c.LocalAddr(), got)
			if p.busy {
				if p.probed && got > controlRetrans[v4]+2 {
					t.Errorf("pair %d %s: %d retransmits, the unprobed busy control had %d", i, c.LocalAddr(), got, controlRetrans[v4])
				}
				after.TotalRetrans = before[c].TotalRetrans
			}
			if diff := cmp.Diff(before[c], after); diff != "" {
				t.Errorf("pair %d %s: socket options or retransmits changed (-before +after):\n%s", i, c.LocalAddr(), diff)
			}
		}
	}
	t.Logf("%d rounds over %d connections: %d probes, %d replies", rounds, len(targets), sent, replies)
}

// busyChecked keeps data flowing both ways like busy, and fails the test if
// either application sees an error other than its own deadlines.
func busyChecked(t *testing.T, a, b net.Conn) (stop func()) {
	done := make(chan struct{})
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	for _, c := range []net.Conn{a, b} {
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				select {
				case <-done:
					return
				default:
				}
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					errc <- fmt.Errorf("read %s: %w", c.LocalAddr(), err)
					return
				}
			}
		})
		wg.Go(func() {
			chunk := make([]byte, 1024)
			for range 30000 { // bounded: at most 30 s
				select {
				case <-done:
					return
				case <-time.After(2 * time.Millisecond):
				}
				c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write(chunk); err != nil {
					errc <- fmt.Errorf("write %s: %w", c.LocalAddr(), err)
					return
				}
			}
		})
	}
	return func() {
		close(done)
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Errorf("application saw an error: %v", err)
		}
		a.SetDeadline(time.Time{})
		b.SetDeadline(time.Time{})
		// Drain what is still in flight so exchange reads its own message.
		for _, c := range []net.Conn{a, b} {
			buf := make([]byte, 64<<10)
			for {
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Read(buf); err != nil {
					break
				}
			}
			c.SetReadDeadline(time.Time{})
		}
	}
}

// TestRateLimitOnTheWire probes many silent suspects under a low rate and
// counts, in the peer's namespace, the probes that arrive: at every sample
// the count stays within rate × elapsed + burst.
func TestRateLimitOnTheWire(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	var targets []Target
	for range 20 {
		s, _ := n.Pair(t, "tcp4")
		targets = append(targets, targetOf(t, n, s))
	}
	for range 10 {
		s, _ := n.Pair(t, "tcp6")
		targets = append(targets, targetOf(t, n, s))
	}
	// Count bare ACKs from the server before anything else sees them; then go silent.
	n.Client.Nft(t, fmt.Sprintf(`table inet gd_pr_count {
	chain in {
		type filter hook input priority -100; policy accept;
		ip saddr %s tcp flags == ack counter
		ip6 saddr %s tcp flags == ack counter
	}
}
`, n.ServerV4, n.ServerV6))
	n.GoSilent(t)
	count := func() uint64 {
		out := n.Client.Exec(t, "nft", "list", "table", "inet", "gd_pr_count")
		var sum uint64
		for _, m := range regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(out, -1) {
			v, _ := strconv.ParseUint(m[1], 10, 64)
			sum += v
		}
		return sum
	}
	cfg := fastConfig()
	cfg.Attempts = 2
	cfg.Rate = 20
	cfg.Burst = 4
	p := New(cfg, seq, nil)
	start := time.Now()
	done := make(chan []Result)
	go func() { done <- p.ProbeAll(context.Background(), targets) }()
	var res []Result
	samples := 0
	for res == nil {
		select {
		case res = <-done:
		case <-time.After(200 * time.Millisecond):
		}
		c := count()
		elapsed := time.Since(start)
		samples++
		if limit := cfg.Rate*elapsed.Seconds() + float64(cfg.Burst); float64(c) > limit {
			t.Errorf("after %v: %d probes on the wire, limit %.1f", elapsed, c, limit)
		}
	}
	total := count()
	elapsed := time.Since(start)
	sent := 0
	for i, r := range res {
		if r.Verdict != Silent {
			t.Errorf("target %d: %+v", i, r)
		}
		sent += r.Sent
	}
	if want := len(targets) * cfg.Attempts; total != uint64(want) || sent != want {
		t.Errorf("%d probes on the wire, %d sent, want %d", total, sent, want)
	}
	t.Logf("%d probes in %v (%.1f/s, limit %.0f/s burst %d), %d samples", total, elapsed, float64(total)/elapsed.Seconds(), cfg.Rate, cfg.Burst, samples)
}
