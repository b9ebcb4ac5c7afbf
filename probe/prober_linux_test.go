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
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: raw sockets, BPF programs and network namespaces")
	}
}

// prSeqReader returns the production sequence reader, or skips when the test
// is not root or this kernel cannot run it.
func prSeqReader(t testing.TB) SeqReader {
	t.Helper()
	needRoot(t)
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

// livePair opens a connection of network across n that has carried data
// both ways, and describes its server end as the inventory would.
func livePair(t testing.TB, n *testnet.Net, network string) (server, client net.Conn, target Target) {
	t.Helper()
	server, client = n.Pair(t, network)
	exchange(t, server, client)
	return server, client, targetOf(t, n, server)
}

// lostPeer is a probe of a connection whose client lost its state behind
// the test network's strict conntrack router.
type lostPeer struct {
	server net.Conn
	p      *Prober
	res    Result
	drops  uint64 // the router's INVALID drops during the probe
	read   error  // what the server owner's 50 ms read returned afterwards
}

// probeLostPeer opens a connection of network across n, makes its client
// forget it and probes the server end with fastConfig changed by config.
func probeLostPeer(t *testing.T, n *testnet.Net, seq SeqReader, network string, config func(*Config, net.Conn)) lostPeer {
	t.Helper()
	server, client, target := livePair(t, n, network)
	n.LoseState(t, client)
	dropsBefore := n.InvalidDrops(t)
	cfg := fastConfig()
	config(&cfg, server)
	lp := lostPeer{server: server, p: New(cfg, seq, nil)}
	var err error
	if lp.res, err = lp.p.Probe(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	lp.drops = n.InvalidDrops(t) - dropsBefore
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, lp.read = server.Read(make([]byte, 1))
	return lp
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
