package probe

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

// TestProbeStaleTSvalIsDropped is the control for the PAWS check above: a
// probe whose TSval lags the socket's clock is rejected by the peer's PAWS
// (its counters move), which is why a probe's TSval must be on the socket's
// clock. The verdict is logged: on kernels that drop PAWS-failed old ACKs
// without an answer, it is a false silent.
func TestProbeStaleTSvalIsDropped(t *testing.T) {
	seq := prSeqReader(t)
	o := newOptNet(t)
	server, client := optPair(t, o.Server, o.Client, "tcp4", net.JoinHostPort(o.ServerV4.String(), "0"), o.ClientV4, nil, nil)
	exchange(t, server, client)
	tg := targetIn(t, o.Server, server)
	counters := func() uint64 {
		return netstat(t, o.Client, "PAWSEstab") + netstat(t, o.Client, "PAWSOldAck")
	}
	before := counters()
	cfg := fastConfig()
	cfg.Attempts = 2
	res, err := New(cfg, staleTS{seq}, nil).Probe(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	rejected := counters() - before
	t.Logf("probes with a TSval 2^30 ticks behind: %s after %d, peer's PAWS rejected %d", res.Verdict, res.Sent, rejected)
	if rejected == 0 {
		t.Errorf("the peer's PAWS accepted stale TSvals: the PAWS check in TestProbeFollowsSocket proves nothing")
	}
	exchange(t, server, client)
}

// staleTS puts the socket's TCP clock 2^30 ticks in the past.
type staleTS struct{ SeqReader }

func (s staleTS) ReadSeq(ctx context.Context, ns string, cookies []uint64) (map[uint64]SeqState, error) {
	m, err := s.SeqReader.ReadSeq(ctx, ns, cookies)
	for k, st := range m {
		st.TSOffset -= 1 << 30
		m[k] = st
	}
	return m, err
}

// usecRoute replaces ns's route to dst via gw with one carrying the
// tcp_usec_ts feature (RTAX_FEATURE_TCP_USEC_TS, Linux 6.7+): connections
// made over it stamp TSvals in microseconds. iproute2 6.1 cannot say it.
func usecRoute(t testing.TB, ns *testnet.NS, dst netip.Prefix, gw netip.Addr) {
	t.Helper()
	f, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fam := uint8(unix.AF_INET)
	if dst.Addr().Is6() {
		fam = unix.AF_INET6
	}
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.RTA_DST, dst.Addr().AsSlice())
	ae.Bytes(unix.RTA_GATEWAY, gw.AsSlice())
	ae.Nested(unix.RTA_METRICS, func(nae *netlink.AttributeEncoder) error {
		nae.Uint32(unix.RTAX_FEATURES, 1<<4) // RTAX_FEATURE_TCP_USEC_TS
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
	rtm := []byte{fam, uint8(dst.Bits()), 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST, 0, 0, 0, 0}
	_, err = c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWROUTE, Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Replace},
		Data:   append(rtm, attrs...),
	})
	if err != nil {
		t.Fatalf("route %s via %s with tcp_usec_ts in %s: %v", dst, gw, ns.Name, err)
	}
}

// TestProbeUsecTimestamps: a connection whose route asks for microsecond
// TSvals (6.7+) is probed with a TSval in microseconds on the socket's
// clock (within 10 s of the kernel's own last TSval, which a millisecond
// value is not), and the peer's PAWS accepts it.
func TestProbeUsecTimestamps(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	usecRoute(t, n.Server, netip.MustParsePrefix("192.0.2.0/24"), n.RouterServerV4)
	usecRoute(t, n.Server, netip.MustParsePrefix("2001:db8:1::/64"), n.RouterServerV6)
	capt := captureIn(t, n.Client)
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			server, client := n.Pair(t, network)
			exchange(t, server, client)
			st := readState(t, seq, n.Server, server)
			if !st.TSOK || !st.USecTS {
				t.Skipf("TSOK %v USecTS %v: this kernel has no usec TCP timestamps (6.7+)", st.TSOK, st.USecTS)
			}
			var paws uint64
			pw := probeCaptured(t, seq, capt, n.Server, server, client, func() {
				paws = netstat(t, n.Client, "PAWSEstab") + netstat(t, n.Client, "PAWSOldAck")
			})
			last := pw.kernel.ts.Val
			var probe *wireSeg
			for _, s := range pw.probes {
				if s.hasTS {
					probe = &s
					break
				}
			}
			if probe == nil {
				t.Fatal("no probe with a timestamp captured at the client")
			}
			// Microseconds: a few ms after the kernel's last segment is thousands of ticks.
			if d := int32(probe.ts.Val - last); d < 0 || d > 10_000_000 {
				t.Errorf("probe TSval %d is %d µs from the kernel's last TSval %d", probe.ts.Val, d, last)
			}
			if got := netstat(t, n.Client, "PAWSEstab") + netstat(t, n.Client, "PAWSOldAck"); got != paws {
				t.Errorf("the peer's PAWS rejected %d probes", got-paws)
			}

			exchange(t, server, client)
		})
	}
}
