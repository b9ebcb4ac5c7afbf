package probe

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/nsthread"
	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/probe/internal/wire"
)

// nftMsgDelRule deletes a chain's rules (every one when no handle is given).
const nftMsgDelRule = 8

// withByteorders returns rule with its byteorder step repeated n times (0:
// left out). An even n leaves the sequence number in network order.
func withByteorders(rule []nftExpr, n int) []nftExpr {
	var out []nftExpr
	for _, e := range rule {
		if e.name != "byteorder" {
			out = append(out, e)
			continue
		}
		for range n {
			out = append(out, e)
		}
	}
	return out
}

// setGuardRules replaces the rules of the guard's chain with the guard's
// own rules, each with its byteorder step repeated n times.
func setGuardRules(b *testing.B, g resetGuard, n int) {
	b.Helper()
	flush, err := nftMsg(nftMsgDelRule, netlink.Acknowledge, nfprotoInet, func(ae *netlink.AttributeEncoder) {
		ae.String(nftaRuleTable, GuardTable)
		ae.String(nftaRuleChain, guardChain)
	})
	if err != nil {
		b.Fatal(err)
	}
	msgs := []netlink.Message{flush}
	for i, v4 := range []bool{true, false} {
		m, err := ruleMsg(withByteorders(guardRule(v4, uint32(i+1)), n))
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	if err := g.(*nftGuard).do(msgs...); err != nil {
		b.Fatalf("replace the guard's rules: %v", err)
	}
}

// BenchmarkGuardRST measures what the reset guard's rule costs an RST that
// reaches it: an op is one RST sent through a raw socket to 127.0.0.1 in a
// namespace of its own, which loopback hands to prerouting, the guard's
// chain and TCP (no socket: dropped) within the sendto call. The RSTs miss
// the set (every other RST on a host does) and each variant keeps the
// set's 8 elements: "none" has no table; "rule-0" the rule without its
// byteorder step; "rule-1" the guard as ghostd installs it; "rule-64" 64
// byteorder steps, which magnifies one step's cost above the noise:
// (rule-64 - rule-0) / 64. Compare medians of -count runs, which the
// go tool interleaves.
func BenchmarkGuardRST(b *testing.B) {
	needRoot(b)
	for _, c := range []struct {
		name       string
		byteorders int // -1: no table
	}{{"none", -1}, {"rule-0", 0}, {"rule-1", 1}, {"rule-64", 64}} {
		b.Run(c.name, func(b *testing.B) {
			ns := testnet.NewNS(b, "grc")
			if c.byteorders >= 0 {
				g, err := openGuard(ns.Path)
				if err != nil {
					b.Fatal(err)
				}
				defer g.close()
				setGuardRules(b, g, c.byteorders)
				for i := range 8 {
					local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(5000+i))
					if err := g.add(local, netip.MustParseAddrPort("127.0.0.2:40000"), uint32(i), time.Hour); err != nil {
						b.Fatal(err)
					}
				}
			}
			var fd int
			err := nsthread.InNetnsAt(ns.Path, func() (err error) {
				fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Close(fd)
			// 256 sequence numbers (none in the set), so that the lookups
			// spread over the set's hash buckets as a host's RSTs do.
			seg := wire.Segment{
				Src: netip.MustParseAddrPort("127.0.0.2:40000"), Dst: netip.MustParseAddrPort("127.0.0.1:5000"),
				Flags: wire.FlagRST,
			}
			var pkts [256][]byte
			for i := range pkts {
				seg.Seq = uint32(i+1) * 0x01010101
				if pkts[i], err = wire.AppendSegment(nil, seg); err != nil {
					b.Fatal(err)
				}
			}
			to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
			for i := 0; b.Loop(); i++ {
				if err := unix.Sendto(fd, pkts[i%len(pkts)], 0, to); err != nil {
					b.Fatal(err)
				}
			}
			if c.byteorders < 0 {
				return
			}
			// The RSTs went through the rule: one with sequence number 0
			// (the same in either byte order) is in the set and dropped.
			b.StopTimer()
			seg.Seq = 0
			pkt, err := wire.AppendSegment(nil, seg)
			if err != nil {
				b.Fatal(err)
			}
			if err := unix.Sendto(fd, pkt, 0, to); err != nil {
				b.Fatal(err)
			}
			if n := guardDrops(ns.Exec(b, "nft", "list", "chain", "inet", GuardTable, guardChain)); n != 1 {
				b.Errorf("the rule dropped %d RSTs, want the 1 in its set", n)
			}
		})
	}
}
