package probe

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

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
	local, remote := testnet.Tuple(server)
	var cookie uint64
	rawFd(t, server, func(fd int) {
		v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		if err != nil {
			t.Fatalf("SO_COOKIE: %v", err)
		}
		cookie = v
	})
	fam := inventory.FamilyInet
	if local.Addr().Is6() {
		fam = inventory.FamilyInet6
	}
	return Target{
		NetnsInode: n.Server.Inode, NetnsPath: n.Server.Path, Cookie: cookie, Family: fam,
		Local: local, Remote: remote,
	}
}

// tcpState returns the socket's TCP state from TCP_INFO.
func tcpState(t testing.TB, c net.Conn) uint8 {
	var st uint8
	rawFd(t, c, func(fd int) {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			t.Fatalf("TCP_INFO: %v", err)
		}
		st = info.State
	})
	return st
}

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
		}
	}
}
