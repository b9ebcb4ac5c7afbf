package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

// TestResetGuardThroughStrictRouter: a peer that lost the connection,
// behind the strict conntrack router (INVALID dropped, tcp_loose=0). Without
// the guard the probes acknowledge RCV.NXT−1, the router drops the peer's
// RST and the verdict is silent; with it they acknowledge RCV.NXT, the RST
// passes the router, ghostd's capture takes it (reset), the guard's rule
// drops it before the local socket, and the socket stays ESTABLISHED with
// its owner seeing nothing, also after the guard's linger. A live peer stays
// alive with the guard. Once the prober is closed, no ghostd table is left.
func TestResetGuardThroughStrictRouter(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	for _, network := range networks {
		for _, guard := range []bool{false, true} {
			lp := probeLostPeer(t, n, seq, network, func(cfg *Config, _ net.Conn) { cfg.ResetGuard = guard })
			res, server, p := lp.res, lp.server, lp.p
			table, _ := n.Server.ExecErr("", "nft", "list", "table", "inet", GuardTable)
			t.Logf("%s guard=%v: verdict=%s confirmed=%v guarded=%v sent=%d replies=%d closedLocal=%v routerInvalidDrops=%d localState=%d ownerRead=%v",
				network, guard, res.Verdict, res.Confirmed, res.Guarded, res.Sent, res.Replies, res.ClosedLocal, lp.drops, tcpState(t, server), lp.read)
			if !errors.Is(lp.read, os.ErrDeadlineExceeded) {
				t.Errorf("%s guard=%v: the owner's read returned %v, want it still blocking", network, guard, lp.read)
			}
			if guard {
				t.Logf("%s: nft list table inet %s while the table lingers:\n%s", network, GuardTable, table)
				if res.Verdict != Reset || !res.Confirmed || !res.Guarded || res.ClosedLocal {
					t.Errorf("%s with the guard: %+v, want a confirmed, guarded reset that closed nothing", network, res)
				}
				if !strings.Contains(table, "flags owner") || guardDrops(table) < 1 {
					t.Errorf("%s: the guard's table does not show the RST dropped:\n%s", network, table)
				}
				// Late answers to earlier attempts are still dropped while
				// the table lingers; after it, nothing closes the socket.
				time.Sleep(guardLinger + time.Second)
			} else if res.Verdict != Silent || !res.Confirmed || res.Guarded || lp.drops == 0 {
				t.Errorf("%s without the guard: %+v, want confirmed silence with the RST dropped by the router", network, res)
			}
			if st := tcpState(t, server); st != 1 /* TCP_ESTABLISHED */ {
				t.Errorf("%s guard=%v: local socket state %d, want ESTABLISHED", network, guard, st)
			}
			p.Close()
			if out := n.Server.Exec(t, "nft", "list", "ruleset"); strings.Contains(out, GuardTable) {
				t.Errorf("%s: ghostd's table outlived the prober:\n%s", network, out)
			}
		}

		// A live peer with the guard: alive, and the connection carries data.
		server, client := n.Pair(t, network)
		exchange(t, server, client)
		cfg := fastConfig()
		cfg.ResetGuard = true
		p := New(cfg, seq, nil)
		res, err := p.Probe(context.Background(), targetOf(t, n, server))
		if err != nil || res.Verdict != Alive || !res.Guarded {
			t.Errorf("%s live peer with the guard: %+v %v, want a guarded alive", network, res, err)
		}
		exchange(t, server, client)
		p.Close()
	}
}

// guardDrops sums the guard rules' packet counters in nft list output.
func guardDrops(out string) int {
	total := 0
	for _, f := range strings.Split(out, "counter packets ")[1:] {
		var n int
		for _, c := range f {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		total += n
	}
	return total
}

// BenchmarkResetGuard measures what the guard adds to a probe: one element
// added and removed (two netlink round trips), and opening a namespace's
// table (once per namespace and probe round).
func BenchmarkResetGuard(b *testing.B) {
	needRoot(b)
	ns := testnet.NewNS(b, "grd")
	local, remote := netip.MustParseAddrPort("198.51.100.2:5432"), netip.MustParseAddrPort("192.0.2.2:40000")
	b.Run("element", func(b *testing.B) {
		g, err := openGuard(ns.Path)
		if err != nil {
			b.Fatal(err)
		}
		defer g.close()
		for i := 0; b.Loop(); i++ {
			if err := g.add(local, remote, uint32(i), time.Minute); err != nil {
				b.Fatal(err)
			}
			if err := g.remove(local, remote, uint32(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			g, err := openGuard(ns.Path)
			if err != nil {
				b.Fatal(err)
			}
			g.close()
		}
	})
}

// guardNS returns a new namespace and the guard opened in it.
func guardNS(t *testing.T) (*testnet.NS, resetGuard) {
	needRoot(t)
	ns := testnet.NewNS(t, "grd")
	g, err := openGuard(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	return ns, g
}

// TestGuardElementShared: two probes of one socket at once (the probe loop
// and a kill's re-confirmation) share its element; it goes only when both
// are done. Adding an element again is accepted by the kernel.
func TestGuardElementShared(t *testing.T) {
	ns, g := guardNS(t)
	c := &countedGuard{resetGuard: g, n: map[string]int{}}
	defer c.close()
	local, remote := netip.MustParseAddrPort("198.51.100.2:5432"), netip.MustParseAddrPort("192.0.2.2:40000")
	elements := func() int {
		return strings.Count(ns.Exec(t, "nft", "list", "set", "inet", GuardTable, "rst4"), "192.0.2.2 . 40000 . 198.51.100.2 . 5432")
	}
	for range 2 {
		if err := c.add(local, remote, 7, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.remove(local, remote, 7); err != nil || elements() != 1 {
		t.Errorf("after one of two probes ended: %v, %d elements, want 1", err, elements())
	}
	if err := c.remove(local, remote, 7); err != nil || elements() != 0 {
		t.Errorf("after both ended: %v, %d elements, want 0", err, elements())
	}
}

// TestGuardTableListable: with elements in both sets, nft(8) lists the
// table in the namespace, alone and in the whole ruleset, and prints each
// element's fields, the sequence number included. Sorting the elements of a set whose key has a field
// nft cannot size made nft 1.0.6 abort (mergesort.c:
// concat_expr_msort_value: Assertion `ilen > 0' failed).
func TestGuardTableListable(t *testing.T) {
	ns, g := guardNS(t)
	defer g.close()
	elems := []struct {
		local, remote string
		seq           uint32
		want          string
	}{
		{"198.51.100.2:5432", "192.0.2.2:40000", 7, "192.0.2.2 . 40000 . 198.51.100.2 . 5432 . 0x00000007"},
		{"198.51.100.2:5433", "192.0.2.2:40000", 0xfffffffe, "192.0.2.2 . 40000 . 198.51.100.2 . 5433 . 0xfffffffe"},
		{"[2001:db8:2::2]:443", "[2001:db8:1::2]:50000", 0x01020304, "2001:db8:1::2 . 50000 . 2001:db8:2::2 . 443 . 0x01020304"},
		{"[2001:db8:2::2]:444", "[2001:db8:1::2]:50000", 0, "2001:db8:1::2 . 50000 . 2001:db8:2::2 . 444 . 0x00000000"},
	}
	for _, e := range elems {
		if err := g.add(netip.MustParseAddrPort(e.local), netip.MustParseAddrPort(e.remote), e.seq, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"list", "table", "inet", GuardTable}, {"list", "ruleset"}} {
		cmd := "nft " + strings.Join(args, " ")
		out, err := ns.ExecErr("", append([]string{"nft"}, args...)...)
		if err != nil {
			t.Errorf("%s: %v", cmd, err)
			continue
		}
		t.Logf("%s:\n%s", cmd, out)
		for _, want := range []string{"table inet " + GuardTable + " {", "set rst4 {", "set rst6 {", "inet_service . mark"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s lacks %q", cmd, want)
			}
		}
		for _, e := range elems {
			if !strings.Contains(out, e.want) {
				t.Errorf("%s lacks the element %q", cmd, e.want)
			}
		}
	}
}
