package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

// The tests in this file check, against the real kernel, that probes follow
// their socket's options and routing: TCP-MD5, the timestamp option, the
// mark, the bound device, TOS / traffic class and the flow label.

// optNet is testnet's three hosts plus what the option tests route over:
//   - the server's second link, eth1 (203.0.113.2/24, 2001:db8:3::2/64) to the
//     router's s1, with a route back to the client over it that loses to eth0's (metric 2000);
//   - a reverse-path filter in the router: a segment arriving on the wrong
//     link for its source is dropped, as a strict uRPF router does;
//   - the client's second address (192.0.2.100, 2001:db8:1::100), which the
//     server reaches only through table 100, selected by fwmark 0x64, and its
//     third (192.0.2.101), reached only through table 101, selected by TOS
//     0x10; the main table sends both into a veth pair leading nowhere.
type optNet struct {
	*testnet.Net
	ServerEth1V4, ServerEth1V6 netip.Addr
	ClientMarkV4, ClientMarkV6 netip.Addr
	ClientTOSV4                netip.Addr
	Eth1                       int // eth1's index in the server
}

const optMark = 0x64

// optTOS is the TOS fib rules select table 101 by (IPv4 rules take the
// RFC 1349 TOS bits only, and iproute2 6.1 has no dscp selector).
const optTOS = 0x10

func newOptNet(t testing.TB) *optNet {
	t.Helper()
	n := testnet.New(t)
	o := &optNet{
		Net:          n,
		ServerEth1V4: netip.MustParseAddr("203.0.113.2"), ServerEth1V6: netip.MustParseAddr("2001:db8:3::2"),
		ClientMarkV4: netip.MustParseAddr("192.0.2.100"), ClientMarkV6: netip.MustParseAddr("2001:db8:1::100"),
		ClientTOSV4: netip.MustParseAddr("192.0.2.101"),
	}
	batch := func(ns *testnet.NS, b string) {
		t.Helper()
		if _, err := ns.ExecErr(b, "ip", "-batch", "-"); err != nil {
			t.Fatalf("%v\nbatch:\n%s", err, b)
		}
	}
	batch(n.Router, fmt.Sprintf(`link add s1 type veth peer name eth1 netns %s
addr add 203.0.113.1/24 dev s1
addr add 2001:db8:3::1/64 dev s1 nodad
link set s1 up
`, n.Server.Name))
	batch(n.Server, `addr add 203.0.113.2/24 dev eth1
addr add 2001:db8:3::2/64 dev eth1 nodad
link set eth1 up
route add 192.0.2.0/24 via 203.0.113.1 dev eth1 metric 2000
route add 2001:db8:1::/64 via 2001:db8:3::1 dev eth1 metric 2000
link add sink0 type veth peer name sink1
link set sink0 up
link set sink1 up
route add 192.0.2.100/32 dev sink0
route add 2001:db8:1::100/128 dev sink0
route add 192.0.2.100/32 via 198.51.100.1 table 100
route add 2001:db8:1::100/128 via 2001:db8:2::1 table 100
rule add fwmark 0x64 lookup 100
route add 192.0.2.101/32 dev sink0
route add 192.0.2.101/32 via 198.51.100.1 table 101
rule add tos 0x10 lookup 101
`)
	o.Server.Exec(t, "ip", "-6", "rule", "add", "fwmark", "0x64", "lookup", "100")
	batch(n.Client, `addr add 192.0.2.100/24 dev eth0 preferred_lft 0
addr add 2001:db8:1::100/64 dev eth0 nodad preferred_lft 0
addr add 192.0.2.101/24 dev eth0 preferred_lft 0
route add 203.0.113.0/24 via 192.0.2.1
route add 2001:db8:3::/64 via 2001:db8:1::1
`)
	n.Router.Nft(t, `table inet gd_rpf {
	chain pre {
		type filter hook prerouting priority raw; policy accept;
		fib saddr . iif oif missing counter drop
	}
}
`)
	if err := n.Server.Do(func() error {
		ifc, err := net.InterfaceByName("eth1")
		if err == nil {
			o.Eth1 = ifc.Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return o
}

// kinds are the healthy connections whose probes must follow the socket.
type optKind struct {
	name    string
	network string
	routed  bool // the socket's routing is the only way to its peer
	pair    func(t testing.TB, o *optNet, network string) (server, client net.Conn)
}

func plainPair(t testing.TB, o *optNet, network string) (net.Conn, net.Conn) {
	return o.Pair(t, network)
}

// markPair: the server socket carries SO_MARK 0x64 (inherited from its
// listener); its only route to the client address is table 100.
func markPair(t testing.TB, o *optNet, network string) (net.Conn, net.Conn) {
	laddr, local := net.JoinHostPort(o.ServerV4.String(), "0"), o.ClientMarkV4
	if network == "tcp6" {
		laddr, local = net.JoinHostPort(o.ServerV6.String(), "0"), o.ClientMarkV6
	}
	return optPair(t, o.Server, o.Client, network, laddr, local, []sockopt{optInt(unix.SOL_SOCKET, unix.SO_MARK, optMark)}, nil)
}

// devicePair: the server listens on eth1's address, bound to eth1; a segment
// from that address leaving by eth0 is dropped by the router's uRPF.
func devicePair(t testing.TB, o *optNet, network string) (net.Conn, net.Conn) {
	laddr := net.JoinHostPort(o.ServerEth1V4.String(), "0")
	if network == "tcp6" {
		laddr = net.JoinHostPort(o.ServerEth1V6.String(), "0")
	}
	return optPair(t, o.Server, o.Client, network, laddr, netip.Addr{}, []sockopt{optDevice("eth1")}, nil)
}

// tosPair: the server socket sets a TOS (IP_TOS / IPV6_TCLASS); over IPv4
// its only route to the client address is table 101, selected by that TOS.
func tosPair(t testing.TB, o *optNet, network string) (net.Conn, net.Conn) {
	laddr, local, opt := net.JoinHostPort(o.ServerV4.String(), "0"), o.ClientTOSV4, optInt(unix.IPPROTO_IP, unix.IP_TOS, optTOS)
	if network == "tcp6" {
		// Linux's own IPv6 TCP route lookups ignore the traffic class (a
		// connection from ::101 never completes), so over IPv6 only the
		// header's traffic class is checked.
		laddr, local, opt = net.JoinHostPort(o.ServerV6.String(), "0"), o.ClientV6, optInt(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, optTOS)
	}
	return optPair(t, o.Server, o.Client, network, laddr, local, []sockopt{opt}, nil)
}

var optKinds = []optKind{
	{"timestamps", "tcp4", false, plainPair}, {"timestamps", "tcp6", false, plainPair},
	{"fwmark", "tcp4", true, markPair}, {"fwmark", "tcp6", true, markPair},
	{"bound device", "tcp4", true, devicePair}, {"bound device", "tcp6", true, devicePair},
	{"tos", "tcp4", true, tosPair}, {"tos", "tcp6", false, tosPair},
}

// TestProbeFollowsSocket probes a healthy connection of each kind and checks
// the probe on the wire at the peer: it arrived, it carries the socket's
// timestamp option (TSecr = ts_recent, a TSval the peer's PAWS accepts),
// TOS / traffic class and flow label, and the peer answered.
func TestProbeFollowsSocket(t *testing.T) {
	seq := prSeqReader(t)
	o := newOptNet(t)
	capt := captureIn(t, o.Client)
	for _, k := range optKinds {
		t.Run(k.name+" "+k.network, func(t *testing.T) {
			server, client := k.pair(t, o, k.network)
			exchange(t, server, client)
			st := readState(t, seq, o.Server, server)
			switch k.name {
			case "fwmark":
				if st.Mark != optMark {
					t.Fatalf("server socket mark %#x, want %#x", st.Mark, optMark)
				}
			case "bound device":
				if st.BoundIf != o.Eth1 {
					t.Fatalf("server socket bound to %d, want eth1 (%d)", st.BoundIf, o.Eth1)
				}
			case "tos":
				if st.TOS != optTOS && st.TClass != optTOS {
					t.Fatalf("server socket TOS %#x TClass %#x, want %#x", st.TOS, st.TClass, optTOS)
				}
			}
			if !st.TSOK {
				t.Fatal("timestamps not negotiated; the test proves nothing")
			}
			var paws uint64
			pw := probeCaptured(t, seq, capt, o.Server, server, client, func() { paws = netstat(t, o.Client, "PAWSEstab") })
			if pw.res.Mode != InWindow {
				t.Fatalf("probe: %+v, want in_window", pw.res)
			}
			st, kernel, p := pw.st, pw.kernel, pw.probes[0]
			if !p.hasTS || p.ts.Ecr != st.TSRecent {
				t.Errorf("probe timestamp %v %+v, want TSecr = ts_recent %d", p.hasTS, p.ts, st.TSRecent)
			}
			if d := int32(p.ts.Val - kernel.ts.Val); d < 0 || d > 10_000 {
				t.Errorf("probe TSval %d is %d ticks from the kernel's last TSval %d", p.ts.Val, d, kernel.ts.Val)
			}
			if p.tos != kernel.tos&ecnMask || p.label != kernel.label {
				t.Errorf("probe tos %#x label %#x, the socket's own segment %#x %#x", p.tos, p.label, kernel.tos, kernel.label)
			}
			if got := netstat(t, o.Client, "PAWSEstab"); got != paws {
				t.Errorf("the peer's PAWS rejected %d probes", got-paws)
			}
			if tcpState(t, server) != 1 || tcpState(t, client) != 1 {
				t.Error("a probe disturbed the connection")
			}
			exchange(t, server, client)
		})
	}
}

// TestProbeRoutingMatters shows what the copy is for: the same healthy
// fwmark, bound-device and TOS-routed connections, probed with the plain route (as
// before probes copied the socket's routing), stay silent: confirmed false
// ghosts. With the socket's routing they are alive (TestProbeFollowsSocket).
func TestProbeRoutingMatters(t *testing.T) {
	seq := prSeqReader(t)
	o := newOptNet(t)
	for _, k := range optKinds {
		if !k.routed {
			continue
		}
		t.Run(k.name+" "+k.network, func(t *testing.T) {
			server, client := k.pair(t, o, k.network)
			exchange(t, server, client)
			tg := targetIn(t, o.Server, server)
			cfg := fastConfig()
			cfg.Attempts = 1
			res, err := New(cfg, plainRoute{seq}, nil).Probe(context.Background(), tg)
			if err != nil || res.Verdict != Silent || !res.Confirmed {
				t.Errorf("plain-routed probe: %+v %v, want a confirmed (false) silent", res, err)
			}
			res, err = New(cfg, seq, nil).Probe(context.Background(), tg)
			if err != nil || res.Verdict != Alive {
				t.Errorf("socket-routed probe: %+v %v, want alive", res, err)
			}
			exchange(t, server, client)
		})
	}
}

// TestProbeUnderPortRule: policy routing that selects on the socket's
// ports, protocol or owner (ip rule sport/dport/ipproto/uidrange) sends the
// socket's segments one way, while a raw probe, which has none of those to
// the route lookup, goes another: here into a black hole. The live peer's
// silence must not be a confirmed ghost.
func TestProbeUnderPortRule(t *testing.T) {
	seq := prSeqReader(t)
	o := newOptNet(t)
	// The server's main table sends the client's mark address into sink0;
	// only table 100 reaches it, and only the server port 5555 uses it.
	if u, err := unfollowedRules(o.Server.Path); err != nil || u {
		t.Fatalf("before the rule: unfollowedRules = %v, %v; want false (fwmark and tos rules are followed)", u, err)
	}
	o.Server.Exec(t, "ip", "rule", "add", "ipproto", "tcp", "sport", "5555", "lookup", "100")
	if u, err := unfollowedRules(o.Server.Path); err != nil || !u {
		t.Fatalf("with the rule: unfollowedRules = %v, %v; want true", u, err)
	}
	server, client := optPair(t, o.Server, o.Client, "tcp4", net.JoinHostPort(o.ServerV4.String(), "5555"), o.ClientMarkV4, nil, nil)
	exchange(t, server, client)
	cfg := fastConfig()
	cfg.Attempts = 2
	res, err := New(cfg, seq, nil).Probe(context.Background(), targetIn(t, o.Server, server))
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict.Ghost() && res.Confirmed || res.Verdict == Silent && res.Uncertain != UncertainRouting {
		t.Errorf("a live peer behind a port-selected route: %+v, want no confirmed ghost (uncertain: routing)", res)
	}
	t.Logf("verdict %s, uncertain %q", res.Verdict, res.Uncertain)
	exchange(t, server, client) // the connection itself still works

	// Overlapping addresses: where the main table leads, another host has
	// the client's address and no such connection, and answers the probes
	// with the RST a lost connection sends. Not the peer's word either, and
	// with reset_local it must not reset the live socket.
	imp := testnet.NewNS(t, "imp")
	o.Server.Exec(t, "ip", "link", "set", "sink1", "netns", imp.Name)
	imp.Exec(t, "ip", "addr", "add", o.ClientMarkV4.String()+"/32", "dev", "sink1")
	imp.Exec(t, "ip", "link", "set", "sink1", "up")
	imp.Exec(t, "ip", "route", "add", "default", "dev", "sink1")
	for _, resetLocal := range []bool{false, true} {
		cfg.ResetLocal = resetLocal
		res, err = New(cfg, seq, nil).Probe(context.Background(), targetIn(t, o.Server, server))
		if err != nil || res.Verdict != Reset || res.Confirmed || res.Uncertain != UncertainRouting {
			t.Errorf("reset_local %v: an impostor's RST: %+v %v, want an unconfirmed reset (uncertain: routing)", resetLocal, res, err)
		}
		if tcpState(t, server) != 1 {
			t.Fatalf("reset_local %v: the impostor's RST closed the live socket", resetLocal)
		}
		exchange(t, server, client)
	}
}

// plainRoute hides a socket's routing from the prober.
type plainRoute struct{ SeqReader }

func (p plainRoute) ReadSeq(ctx context.Context, ns string, cookies []uint64) (map[uint64]SeqState, error) {
	m, err := p.SeqReader.ReadSeq(ctx, ns, cookies)
	for k, st := range m {
		st.Mark, st.BoundIf, st.TOS, st.TClass = 0, 0, 0, 0
		m[k] = st
	}
	return m, err
}

// TestProbeTCPMD5Pair: a TCP-MD5 connection is never probed, so never a
// ghost; `ghostd probe` shows why. Probed anyway (the flag hidden), the peer
// drops every probe (TcpExtTCPMD5NotFound) and the verdict is a confirmed,
// false, silent: the bug the flag prevents.
func TestProbeTCPMD5Pair(t *testing.T) {
	seq := prSeqReader(t)
	o := newOptNet(t)
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			laddr, srvAddr, cliAddr := net.JoinHostPort(o.ServerV4.String(), "0"), o.ServerV4, o.ClientV4
			if network == "tcp6" {
				laddr, srvAddr, cliAddr = net.JoinHostPort(o.ServerV6.String(), "0"), o.ServerV6, o.ClientV6
			}
			server, client := optPair(t, o.Server, o.Client, network, laddr, netip.Addr{},
				[]sockopt{optMD5(cliAddr, "bgp-secret")}, []sockopt{optMD5(srvAddr, "bgp-secret")})
			exchange(t, server, client)
			tg := targetIn(t, o.Server, server)
			p := New(fastConfig(), seq, nil)
			for range 3 {
				res, err := p.Probe(context.Background(), tg)
				if err != nil || res.Verdict != Unprobed || res.Unprobeable != UnprobeableTCPMD5 || res.Confirmed || res.Sent != 0 {
					t.Fatalf("MD5 pair: %+v %v, want unprobed (tcp_md5) with nothing sent", res, err)
				}
			}
			before := netstat(t, o.Client, "TCPMD5NotFound")
			cfg := fastConfig()
			cfg.Attempts = 2
			res, err := New(cfg, hideMD5{seq}, nil).Probe(context.Background(), tg)
			if err != nil || res.Verdict != Silent {
				t.Errorf("unsigned probes to an MD5 peer: %+v %v, want silent", res, err)
			}
			if got := netstat(t, o.Client, "TCPMD5NotFound") - before; got < 2 {
				t.Errorf("the peer counted %d unsigned segments, want 2", got)
			}
			exchange(t, server, client)
		})
	}
}

// hideMD5 hides the socket's TCP-MD5 keys from the prober.
type hideMD5 struct{ SeqReader }

func (h hideMD5) ReadSeq(ctx context.Context, ns string, cookies []uint64) (map[uint64]SeqState, error) {
	m, err := h.SeqReader.ReadSeq(ctx, ns, cookies)
	for k, st := range m {
		st.MD5 = false
		m[k] = st
	}
	return m, err
}

// TestProbeOptionRounds probes healthy connections of every kind, TCP-MD5
// included, 20 rounds in a row: no round may call any of them a ghost.
func TestProbeOptionRounds(t *testing.T) {
	seq := prSeqReader(t)
	o := newOptNet(t)
	var targets []Target
	var conns [][2]net.Conn
	for _, k := range optKinds {
		s, c := k.pair(t, o, k.network)
		targets = append(targets, targetIn(t, o.Server, s))
		conns = append(conns, [2]net.Conn{s, c})
	}
	for _, network := range networks {
		laddr, srvAddr, cliAddr := net.JoinHostPort(o.ServerV4.String(), "0"), o.ServerV4, o.ClientV4
		if network == "tcp6" {
			laddr, srvAddr, cliAddr = net.JoinHostPort(o.ServerV6.String(), "0"), o.ServerV6, o.ClientV6
		}
		s, c := optPair(t, o.Server, o.Client, network, laddr, netip.Addr{},
			[]sockopt{optMD5(cliAddr, "k")}, []sockopt{optMD5(srvAddr, "k")})
		targets = append(targets, targetIn(t, o.Server, s))
		conns = append(conns, [2]net.Conn{s, c})
	}
	p := New(fastConfig(), seq, nil)
	const rounds = 20
	counts := map[string]int{}
	for round := range rounds {
		for i, r := range p.ProbeAll(context.Background(), targets) {
			counts[string(r.Verdict)+"/"+r.Unprobeable]++
			if r.Verdict.Ghost() || r.Err != nil {
				t.Errorf("round %d: healthy %s→%s: %+v", round, targets[i].Local, targets[i].Remote, r)
			}
		}
	}
	t.Logf("%d rounds over %d healthy connections: %v", rounds, len(targets), counts)
	if want := rounds * (len(targets) - 2); counts["alive/"] != want || counts["unprobed/tcp_md5"] != rounds*2 {
		t.Errorf("verdicts %v, want %d alive and %d unprobed (tcp_md5)", counts, want, rounds*2)
	}
	for _, c := range conns {
		exchange(t, c[0], c[1])
	}
}
