package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/inventory"
	"golang.org/x/sys/unix"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: raw sockets and network namespaces")
	}
}

// iterReader returns the production sequence reader, or skips when this
// kernel cannot run it.
func prSeqReader(t testing.TB) SeqReader {
	t.Helper()
	r, err := NewIterReader()
	if err != nil {
		t.Skipf("BPF TCP iterator unavailable: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// fastConfig keeps the network tests short while staying within the
// kernel's one-answer-per-500ms limit.
func fastConfig() Config {
	c := DefaultConfig()
	c.HostHint = false // DefaultConfig pings silent peers; tests that want the echo say so
	c.Interval = MinInterval
	c.Timeout = 500 * time.Millisecond
	c.Rate = 1000
	return c
}

// rawFd runs fn with the connection's file descriptor.
func rawFd(t testing.TB, c net.Conn, fn func(fd int)) {
	t.Helper()
	sc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Control(func(fd uintptr) { fn(int(fd)) }); err != nil {
		t.Fatal(err)
	}
}

// targetOf describes the server end of a testnet pair as the inventory would.
func targetOf(t testing.TB, n *testnet.Net, server net.Conn) Target {
	t.Helper()
	return targetIn(t, n.Server, server)
}

// targetIn describes c, a socket in ns, as the inventory would.
func targetIn(t testing.TB, ns *testnet.NS, c net.Conn) Target {
	t.Helper()
	local, remote := testnet.Tuple(c)
	cookie := testnet.Cookie(t, c.(syscall.Conn))
	fam := inventory.FamilyInet
	if local.Addr().Is6() {
		fam = inventory.FamilyInet6
	}
	return Target{NetnsInode: ns.Inode, NetnsPath: ns.Path, Cookie: cookie, Family: fam, Local: local, Remote: remote}
}

// tcpState returns the socket's TCP state from TCP_INFO.
func tcpState(t testing.TB, c net.Conn) uint8 { return testnet.TCPInfo(t, c).State }

// exchange checks that the connection still carries data both ways.
func exchange(t testing.TB, a, b net.Conn) {
	t.Helper()
	msg := []byte("ghostd probe test payload")
	for _, dir := range [][2]net.Conn{{a, b}, {b, a}} {
		dir[1].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := dir[0].Write(msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(dir[1], got); err != nil {
			t.Fatalf("read: %v", err)
		}
		dir[1].SetReadDeadline(time.Time{})
	}
}

var networks = []string{"tcp4", "tcp6"}

// routerRulesetForTests restores testnet's router rules after a test removed them.
const routerRulesetForTests = `table inet gd_router {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state invalid counter drop
	}
}
`

func TestVerdictsOnTestNetwork(t *testing.T) {
	needRoot(t)
	seq := prSeqReader(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, n *testnet.Net, server, client net.Conn) (stop func())
		cfg   func(*Config)
		want  Verdict
	}{{
		name: "idle healthy",
		want: Alive,
	}, {
		name: "busy healthy",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) func() {
			return busy(server, client)
		},
		want: Alive,
	}, {
		name: "zero window",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) func() {
			fillWindow(t, server)
			return nil
		},
		want: Alive,
	}, {
		// The default ACK (RCV.NXT-1) provokes a RST the router drops as
		// INVALID: still a confirmed ghost, and the local socket is left alone.
		name: "peer lost state",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) func() {
			n.LoseState(t, client)
			return nil
		},
		want: Silent,
	}, {
		name: "peer lost state with ResetLocal",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) func() {
			n.LoseState(t, client)
			return nil
		},
		cfg:  func(c *Config) { c.ResetLocal = true },
		want: Reset,
	}, {
		name: "peer lost state on a path without a stateful firewall",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) func() {
			n.Router.Nft(t, "delete table inet gd_router\n")
			n.LoseState(t, client)
			return func() { n.Router.Nft(t, routerRulesetForTests) }
		},
		want: Reset,
	}, {
		name: "peer silent",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) func() {
			n.GoSilent(t)
			return nil
		},
		want: Silent,
	}, {
		name: "router forgot the flow",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) func() {
			n.ForgetFlow(t, server)
			return nil
		},
		want: Silent,
	}}
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			n := testnet.New(t)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					server, client := n.Pair(t, network)
					exchange(t, server, client)
					target := targetOf(t, n, server)
					if tt.setup != nil {
						if stop := tt.setup(t, n, server, client); stop != nil {
							defer stop()
						}
					}
					defer n.Heal(t)
					cfg := fastConfig()
					if tt.cfg != nil {
						tt.cfg(&cfg)
					}
					p := New(cfg, seq, nil)
					defer p.Close()
					res, err := p.Probe(context.Background(), target)
					if err != nil {
						t.Fatalf("Probe: %v", err)
					}
					t.Logf("%+v", res)
					if res.Verdict != tt.want || res.Mode != InWindow {
						t.Fatalf("verdict %s mode %s, want %s in_window", res.Verdict, res.Mode, tt.want)
					}
					if !res.Confirmed {
						t.Errorf("verdict not confirmed")
					}
					if closed := tcpState(t, server) != 1; res.ClosedLocal != closed { // 1: TCP_ESTABLISHED
						t.Errorf("ClosedLocal = %v, but the local socket closed: %v", res.ClosedLocal, closed)
					}
					if tt.want == Alive && (res.RTT <= 0 || res.Replies < 1) {
						t.Errorf("alive without RTT or replies: %+v", res)
					}
					if tt.want == Silent && res.Sent != p.cfg.Attempts {
						t.Errorf("silent after %d probes, want %d", res.Sent, p.cfg.Attempts)
					}
				})
			}
		})
	}
}

// busy keeps data flowing both ways until stop is called.
func busy(a, b net.Conn) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range []net.Conn{a, b} {
		wg.Go(func() { // reader
			buf := make([]byte, 64<<10)
			for {
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				_, err := c.Read(buf)
				select {
				case <-done:
					return
				default:
				}
				if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					return
				}
			}
		})
		wg.Go(func() { // writer, bounded: at most 30 s of 1 KiB every ms
			chunk := make([]byte, 1024)
			for i := 0; i < 30000; i++ {
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
				c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		})
	}
	return func() {
		close(done)
		wg.Wait()
		a.SetDeadline(time.Time{})
		b.SetDeadline(time.Time{})
	}
}

// fillWindow writes to c until the peer's receive window and c's send buffer are full.
func fillWindow(t testing.TB, c net.Conn) {
	t.Helper()
	chunk := make([]byte, 64<<10)
	for i := 0; i < 1000; i++ {
		c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Write(chunk); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.SetWriteDeadline(time.Time{})
				return
			}
			t.Fatalf("fill window: %v", err)
		}
	}
	t.Fatal("fill window: the peer kept reading")
}

// TestRSTMeasurement measures what the peer's RST does for both ACK choices
// through the conntrack router: does it reach us, and does it close the
// local socket. The numbers are logged (go test -v) and the verdicts asserted.
func TestRSTMeasurement(t *testing.T) {
	needRoot(t)
	seq := prSeqReader(t)
	for _, network := range networks {
		n := testnet.New(t)
		for _, resetLocal := range []bool{false, true} {
			server, client := n.Pair(t, network)
			exchange(t, server, client)
			target := targetOf(t, n, server)
			n.LoseState(t, client)
			dropsBefore := n.InvalidDrops(t)
			cfg := fastConfig()
			cfg.ResetLocal = resetLocal
			cfg.StillExists = func(Target) bool { return tcpState(t, server) == 1 /* TCP_ESTABLISHED */ }
			p := New(cfg, seq, nil)
			res, err := p.Probe(context.Background(), target)
			if err != nil {
				t.Fatal(err)
			}
			drops := n.InvalidDrops(t) - dropsBefore
			server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			_, rerr := server.Read(make([]byte, 1))
			t.Logf("%s ResetLocal=%v: verdict=%s sent=%d replies=%d closedLocal=%v routerInvalidDrops=%d localState=%d ownerRead=%v",
				network, resetLocal, res.Verdict, res.Sent, res.Replies, res.ClosedLocal, drops, tcpState(t, server), rerr)
			// What was measured here: with ACK = RCV.NXT-1 the router drops the
			// peer's RST as INVALID (seq below what it has seen acknowledged) and
			// the local socket lives on; with ACK = RCV.NXT the RST gets through
			// and the kernel resets the local socket.
			if resetLocal {
				if res.Verdict != Reset || !res.ClosedLocal || !errors.Is(rerr, syscall.ECONNRESET) {
					t.Errorf("ResetLocal: want a reset that closed the local socket")
				}
			} else if res.Verdict != Silent || !res.Confirmed || res.ClosedLocal || drops == 0 || tcpState(t, server) != 1 {
				t.Errorf("default: want confirmed silence, the RST dropped by the router, the local socket intact")
			}
		}
	}
}

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
	needRoot(t)
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
	for round := range rounds {
		for i, r := range pr.ProbeAll(context.Background(), targets) {
			if r.Verdict != Alive || r.Mode != InWindow {
				t.Fatalf("round %d target %d: %+v", round, i, r)
			}
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
	st := pr.Stats()
	t.Logf("%d rounds over %d connections: %d probes, replies %v", rounds, len(targets), st.Sent, st.Replies)
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
	needRoot(t)
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
	for i, r := range res {
		if r.Verdict != Silent {
			t.Errorf("target %d: %+v", i, r)
		}
	}
	if want := uint64(len(targets) * cfg.Attempts); total != want || p.Stats().Sent != want {
		t.Errorf("%d probes on the wire, %d sent, want %d", total, p.Stats().Sent, want)
	}
	t.Logf("%d probes in %v (%.1f/s, limit %.0f/s burst %d), %d samples", total, elapsed, float64(total)/elapsed.Seconds(), cfg.Rate, cfg.Burst, samples)
}

// TestV4MappedOnTestNetwork probes a dual-stack server socket talking to an
// IPv4 client: the inventory reports it as inet6 with ::ffff: addresses, and
// the probe must go out over IPv4.
func TestV4MappedOnTestNetwork(t *testing.T) {
	needRoot(t)
	seq := prSeqReader(t)
	n := testnet.New(t)
	l := n.Server.Listen(t, "tcp", "[::]:0")
	_, port, _ := net.SplitHostPort(l.Addr().String())
	client := n.Client.Dial(t, "tcp4", net.JoinHostPort(n.ServerV4.String(), port))
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	target := targetOf(t, n, server)
	la, ra := server.LocalAddr().(*net.TCPAddr).AddrPort(), server.RemoteAddr().(*net.TCPAddr).AddrPort()
	if !la.Addr().Is4In6() {
		t.Fatalf("server socket is not v4-mapped: %s", la)
	}
	target.Family, target.Local, target.Remote = inventory.FamilyInet6, la, ra
	p := New(fastConfig(), seq, nil)
	res, err := p.Probe(context.Background(), target)
	if err != nil || res.Verdict != Alive || res.Mode != InWindow {
		t.Fatalf("mapped alive: %+v %v", res, err)
	}
	n.LoseState(t, client)
	cfg := fastConfig()
	cfg.ResetLocal = true
	res, err = New(cfg, seq, nil).Probe(context.Background(), target)
	if err != nil || res.Verdict != Reset {
		t.Fatalf("mapped reset: %+v %v", res, err)
	}
}

// TestTimestampsNegotiated checks the premise of option-less probes: the
// test connections negotiate TCP timestamps, and the peer still answers
// (Linux does not PAWS-check segments that carry no timestamp).
func TestTimestampsNegotiated(t *testing.T) {
	needRoot(t)
	seq := prSeqReader(t)
	n := testnet.New(t)
	server, _ := n.Pair(t, "tcp4")
	if testnet.TCPInfo(t, server).Options&1 == 0 { // TCPI_OPT_TIMESTAMPS
		t.Fatal("timestamps not negotiated; the test proves nothing")
	}
	res, err := New(fastConfig(), seq, nil).Probe(context.Background(), targetOf(t, n, server))
	if err != nil || res.Verdict != Alive {
		t.Fatalf("%+v %v", res, err)
	}
}

// TestBlindThroughRouter measures blind (random-sequence) probes: behind the
// conntrack router their silence must never become a confirmed ghost, and
// on a path without a stateful firewall a blind RST is still evidence.
func TestBlindThroughRouter(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	cfg := fastConfig()
	cfg.Attempts = 3
	var targets []Target
	for range 8 {
		s, _ := n.Pair(t, "tcp4")
		targets = append(targets, targetOf(t, n, s))
	}
	drops := n.InvalidDrops(t)
	p := New(cfg, nil, nil)
	alive := 0
	for i, r := range p.ProbeAll(context.Background(), targets) {
		if r.Mode != Blind {
			t.Fatalf("target %d: mode %s", i, r.Mode)
		}
		if r.Verdict.Ghost() && r.Confirmed {
			t.Errorf("target %d: a live peer became a confirmed ghost: %+v", i, r)
		}
		if r.Verdict == Alive {
			alive++
		}
	}
	t.Logf("blind through the router: %d of %d live peers answered; %d probes sent, router dropped %d as INVALID",
		alive, len(targets), p.Stats().Sent, n.InvalidDrops(t)-drops)

	// Without the stateful firewall, a blind probe to a peer that lost state gets its RST.
	n.Router.Nft(t, "delete table inet gd_router\n")
	defer n.Router.Nft(t, routerRulesetForTests)
	server, client := n.Pair(t, "tcp6")
	target := targetOf(t, n, server)
	n.LoseState(t, client)
	res, err := New(cfg, nil, nil).Probe(context.Background(), target)
	if err != nil || res.Verdict != Reset || !res.Confirmed || res.ClosedLocal {
		t.Fatalf("blind reset on an open path: %+v %v", res, err)
	}
	if tcpState(t, server) != 1 {
		t.Error("a blind RST closed the local socket")
	}
}

// TestHostHintOnTestNetwork checks the ICMP echo hint for silent peers.
func TestHostHintOnTestNetwork(t *testing.T) {
	needRoot(t)
	seq := prSeqReader(t)
	n := testnet.New(t)
	cfg := fastConfig()
	cfg.Attempts = 1
	cfg.HostHint = true
	for _, network := range networks {
		// The router forgot the flow, but the host answers pings.
		server, _ := n.Pair(t, network)
		target := targetOf(t, n, server)
		n.ForgetFlow(t, server)
		res, err := New(cfg, seq, nil).Probe(context.Background(), target)
		if err != nil || res.Verdict != Silent || res.HostReachable == nil || !*res.HostReachable {
			t.Errorf("%s forgotten flow: %+v %v", network, res, err)
		}
		// The host is gone.
		server, _ = n.Pair(t, network)
		target = targetOf(t, n, server)
		n.GoSilent(t)
		res, err = New(cfg, seq, nil).Probe(context.Background(), target)
		n.Heal(t)
		if err != nil || res.Verdict != Silent || res.HostReachable == nil || *res.HostReachable {
			t.Errorf("%s silent host: %+v %v", network, res, err)
		}
	}
}

// TestProbeRefusesChangedNamespace: a namespace path that now names another
// namespace than the inventory saw (a reused PID, a recreated /run/netns
// name) is never entered: its targets are unprobed with ErrNetnsChanged and
// no segment leaves. The right inode is probed as usual.
func TestProbeRefusesChangedNamespace(t *testing.T) {
	needRoot(t)
	seq := prSeqReader(t)
	n := testnet.New(t)
	server, _ := n.Pair(t, "tcp4")
	target := targetOf(t, n, server)
	p := New(fastConfig(), seq, nil)
	if res, err := p.Probe(context.Background(), target); err != nil || res.Verdict != Alive {
		t.Fatalf("right namespace: %+v %v", res, err)
	}
	wrong := target
	wrong.NetnsInode = n.Client.Inode // the scan saw another namespace at this path
	res, err := p.Probe(context.Background(), wrong)
	if !errors.Is(err, ErrNetnsChanged) || res.Verdict != Unprobed || res.Sent != 0 {
		t.Fatalf("changed namespace: %+v %v; want unprobed with ErrNetnsChanged and nothing sent", res, err)
	}
}
