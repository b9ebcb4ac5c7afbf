package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/inventory"
)

// The tests in this file check, against the real kernel, that probes follow
// their socket's options and routing: TCP-MD5, the timestamp option, the
// mark, the bound device, TOS / traffic class and the flow label.

// sockopt is a socket option a test sets before connect or listen.
type sockopt func(fd int) error

func optInt(level, opt, v int) sockopt {
	return func(fd int) error { return unix.SetsockoptInt(fd, level, opt, v) }
}

func optDevice(name string) sockopt {
	return func(fd int) error { return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, name) }
}

// optMD5 installs a TCP-MD5 key for peer (RFC 2385), as BGP speakers do.
func optMD5(peer netip.Addr, key string) sockopt {
	return func(fd int) error {
		sig := unix.TCPMD5Sig{Keylen: uint16(len(key))}
		copy(sig.Key[:], key)
		if peer.Is4() {
			sig.Addr.Family = unix.AF_INET
			a := peer.As4()
			copy(sig.Addr.Data[2:], a[:])
		} else {
			sig.Addr.Family = unix.AF_INET6
			a := peer.As16()
			copy(sig.Addr.Data[6:], a[:])
		}
		return unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig)
	}
}

func control(opts []sockopt) func(string, string, syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			for _, o := range opts {
				if serr = o(int(fd)); serr != nil {
					return
				}
			}
		}); err != nil {
			return err
		}
		return serr
	}
}

// optPair connects a client in cns (from local, if valid) to a listener on
// laddr in sns, with options on each side, and returns the accepted server
// end and the client. Go's own keepalive is off on both ends. Both are
// closed in t.Cleanup.
func optPair(t testing.TB, sns, cns *testnet.NS, network, laddr string, local netip.Addr, srvOpts, cliOpts []sockopt) (server, client net.Conn) {
	t.Helper()
	var ln net.Listener
	err := sns.Do(func() (err error) {
		lc := net.ListenConfig{Control: control(srvOpts), KeepAlive: -1}
		ln, err = lc.Listen(context.Background(), network, laddr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", laddr, sns.Name, err)
	}
	defer ln.Close()
	err = cns.Do(func() (err error) {
		d := net.Dialer{Control: control(cliOpts), KeepAlive: -1, Timeout: testnet.DialTimeout}
		if local.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
		}
		client, err = d.Dial(network, ln.Addr().String())
		return err
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", ln.Addr(), cns.Name, err)
	}
	t.Cleanup(func() { client.Close() })
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(testnet.DialTimeout))
	server, err = ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { server.Close() })
	return server, client
}

// optTarget describes c, a socket in ns, as the inventory would.
func optTarget(t testing.TB, ns *testnet.NS, c net.Conn) Target {
	t.Helper()
	local, remote := testnet.Tuple(c)
	var cookie uint64
	rawFd(t, c, func(fd int) {
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
	return Target{NetnsInode: ns.Inode, NetnsPath: ns.Path, Cookie: cookie, Family: fam, Local: local, Remote: remote}
}

// readState reads c's SeqState through the iterator.
func readState(t testing.TB, r SeqReader, ns *testnet.NS, c net.Conn) SeqState {
	t.Helper()
	tg := optTarget(t, ns, c)
	m, err := r.ReadSeq(context.Background(), ns.Path, []uint64{tg.Cookie})
	if err != nil {
		t.Fatal(err)
	}
	st, ok := m[tg.Cookie]
	if !ok {
		t.Fatalf("iterator did not report %s", c.LocalAddr())
	}
	return st
}

// netstat returns a TcpExt counter of the namespace. /proc/net follows the
// process's main thread, so the thread in ns reads /proc/thread-self/net.
func netstat(t testing.TB, ns *testnet.NS, name string) uint64 {
	t.Helper()
	var b []byte
	if err := ns.Do(func() (err error) { b, err = os.ReadFile("/proc/thread-self/net/netstat"); return err }); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(keys) == 0 || keys[0] != "TcpExt:" || len(keys) != len(vals) {
			continue
		}
		for j, k := range keys {
			if k == name {
				v, err := strconv.ParseUint(vals[j], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatalf("no TcpExt %s in %s", name, ns.Name)
	return 0
}

// wireSeg is a TCP segment as captured, with the IP header fields probes copy.
type wireSeg struct {
	src, dst     netip.AddrPort
	seq, ack     uint32
	flags        uint8
	payload      int
	tos          uint8 // IPv4 TOS or IPv6 traffic class
	label        uint32
	ts           Timestamp
	hasTS        bool
	ifindex      int
	pktType      uint8
	capturedWhen time.Time
}

// wireCapture is an AF_PACKET SOCK_DGRAM socket in one namespace seeing
// every TCP segment in and out of it.
type wireCapture struct{ fd int }

func captureIn(t testing.TB, ns *testnet.NS) *wireCapture {
	t.Helper()
	c := &wireCapture{fd: -1}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		c.fd = fd
		tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	})
	if c.fd >= 0 {
		t.Cleanup(func() { unix.Close(c.fd) })
	}
	if err != nil {
		t.Fatalf("capture in %s: %v", ns.Name, err)
	}
	return c
}

// drain returns the TCP segments captured since the last call.
func (c *wireCapture) drain(t testing.TB) []wireSeg {
	t.Helper()
	var out []wireSeg
	buf := make([]byte, 70000)
	for {
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return out
		}
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		ll, _ := from.(*unix.SockaddrLinklayer)
		proto, src, dst, payload, err := ipPayload(buf[:n], false)
		if err != nil || proto != ProtoTCP || len(payload) < TCPMinSize {
			continue
		}
		tcp := TCPHeader(payload)
		s := wireSeg{
			src: netip.AddrPortFrom(src, tcp.SrcPort()), dst: netip.AddrPortFrom(dst, tcp.DstPort()),
			seq: tcp.Seq(), ack: tcp.Ack(), flags: tcp.Flags(), payload: len(payload) - tcp.HeaderLen(),
			capturedWhen: time.Now(),
		}
		if src.Is4() {
			s.tos = IPv4Header(buf).TOS()
		} else {
			s.tos, s.label = IPv6Header(buf).TrafficClass(), IPv6Header(buf).FlowLabel()
		}
		s.ts, s.hasTS = tcp.Timestamp()
		if ll != nil {
			s.ifindex, s.pktType = ll.Ifindex, ll.Pkttype
		}
		out = append(out, s)
	}
}

// from keeps the segments sent from src to dst.
func from(segs []wireSeg, src, dst netip.AddrPort) []wireSeg {
	var out []wireSeg
	for _, s := range segs {
		if s.src == src && s.dst == dst {
			out = append(out, s)
		}
	}
	return out
}

// TestIterSocketOptions reads the record's option, routing and keepalive
// fields of loopback connections and compares them with what was set, and
// the flow label with the one the kernel puts on the wire.
func TestIterSocketOptions(t *testing.T) {
	r := iterReader(t)
	hz, err := KernelHZ()
	if err != nil {
		t.Fatal(err)
	}
	if want := kconfigHZ(t); want != 0 && hz != want {
		t.Errorf("KernelHZ %d, kernel config says CONFIG_HZ=%d", hz, want)
	}
	t.Logf("kernel HZ %d", hz)
	ns := testnet.NewNS(t, "so")
	lo, err := net.InterfaceByName("lo") // every namespace's lo has index 1
	if err != nil {
		t.Fatal(err)
	}

	t.Run("keepalive and routing set", func(t *testing.T) {
		_, c := optPair(t, ns, ns, "tcp4", "127.0.0.1:0", netip.Addr{}, nil, []sockopt{
			optInt(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1),
			optInt(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 300),
			optInt(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 100),
			optInt(unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 3),
			optInt(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 5000),
			optInt(unix.SOL_SOCKET, unix.SO_MARK, 0x1234),
			optInt(unix.IPPROTO_IP, unix.IP_TOS, 0xb8|1), // ECN bits are not ours to copy
			optDevice("lo"),
		})
		st := readState(t, r, ns, c)
		if st.KeepTime != 300*time.Second || st.KeepIntvl != 100*time.Second || st.KeepProbes != 3 || st.UserTimeout != 5*time.Second {
			t.Errorf("keepalive %v/%v/%d, user timeout %v; want 5m0s/1m40s/3, 5s", st.KeepTime, st.KeepIntvl, st.KeepProbes, st.UserTimeout)
		}
		if st.Mark != 0x1234 || st.BoundIf != lo.Index || st.TOS != 0xb8 {
			t.Errorf("mark %#x bound %d tos %#x; want 0x1234, %d, 0xb8", st.Mark, st.BoundIf, st.TOS, lo.Index)
		}
		if st.MD5 || st.AO {
			t.Errorf("MD5 %v AO %v on a socket without keys", st.MD5, st.AO)
		}
	})
	t.Run("nothing set", func(t *testing.T) {
		s, c := optPair(t, ns, ns, "tcp4", "127.0.0.1:0", netip.Addr{}, nil, nil)
		for _, conn := range []net.Conn{s, c} {
			st := readState(t, r, ns, conn)
			if st.KeepTime != 0 || st.KeepIntvl != 0 || st.KeepProbes != 0 || st.UserTimeout != 0 ||
				st.Mark != 0 || st.BoundIf != 0 || st.TOS != 0 || st.FlowLabel != 0 {
				t.Errorf("%s: %+v, want every option field zero", conn.LocalAddr(), st)
			}
		}
	})
	t.Run("tcp-md5", func(t *testing.T) {
		lo4 := netip.MustParseAddr("127.0.0.1")
		s, c := optPair(t, ns, ns, "tcp4", "127.0.0.1:0", netip.Addr{}, []sockopt{optMD5(lo4, "ghostd-test")}, []sockopt{optMD5(lo4, "ghostd-test")})
		for _, conn := range []net.Conn{s, c} {
			if st := readState(t, r, ns, conn); !st.MD5 || st.AO || st.Unprobeable() != UnprobeableTCPMD5 {
				t.Errorf("%s: MD5 %v AO %v Unprobeable %q", conn.LocalAddr(), st.MD5, st.AO, st.Unprobeable())
			}
		}
	})

	// IPv6: the traffic class, and the flow label as the kernel sends it.
	capt := iterCaptureLo(t, ns)
	for _, tc := range []struct {
		name   string
		sysctl map[string]string
		opts   []sockopt
		auto   bool // an automatic label is expected
	}{
		{name: "auto label", auto: true},
		{name: "opted out", opts: []sockopt{optInt(unix.IPPROTO_IPV6, unix.IPV6_AUTOFLOWLABEL, 0)}},
		{name: "forced over an opt-out", sysctl: map[string]string{"net.ipv6.auto_flowlabels": "3"},
			opts: []sockopt{optInt(unix.IPPROTO_IPV6, unix.IPV6_AUTOFLOWLABEL, 0)}, auto: true},
		{name: "stateless range flag", sysctl: map[string]string{"net.ipv6.flowlabel_state_ranges": "1"}, auto: true},
		{name: "labels off", sysctl: map[string]string{"net.ipv6.auto_flowlabels": "0"}},
	} {
		t.Run("ipv6 "+tc.name, func(t *testing.T) {
			for k, v := range tc.sysctl {
				old := ns.ReadSysctl(t, k)
				ns.Sysctl(t, k, v)
				defer ns.Sysctl(t, k, old)
			}
			opts := append([]sockopt{optInt(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, 0x28)}, tc.opts...)
			_, c := optPair(t, ns, ns, "tcp6", "[::1]:0", netip.Addr{}, nil, opts)
			capt.drain(t)
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			st := readState(t, r, ns, c)
			label, seen := wireLabel(t, capt, iterPort(c.LocalAddr()))
			if !seen {
				t.Fatal("captured no segment from the client")
			}
			if st.TClass != 0x28 {
				t.Errorf("TClass %#x, want 0x28", st.TClass)
			}
			if st.FlowLabel != label || (label != 0) != tc.auto {
				t.Errorf("record says label %#x, the kernel sent %#x (automatic label expected: %v)", st.FlowLabel, label, tc.auto)
			}
			if tc.sysctl["net.ipv6.flowlabel_state_ranges"] == "1" && label&0x80000 == 0 {
				t.Errorf("label %#x lacks the stateless flag", label)
			}
		})
	}
}

// wireLabel returns the flow label of the last IPv6 segment captured on lo
// from port.
func wireLabel(t testing.TB, c *iterCapture, port uint16) (label uint32, seen bool) {
	t.Helper()
	buf := make([]byte, 70000)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return label, seen
		}
		if err != nil {
			t.Fatal(err)
		}
		b := buf[:n]
		if n < 14+IPv6Size+TCPMinSize || binary.BigEndian.Uint16(b[12:]) != unix.ETH_P_IPV6 {
			continue
		}
		ip := IPv6Header(b[14:])
		if ip.NextHeader() == ProtoTCP && TCPHeader(b[14+IPv6Size:]).SrcPort() == port {
			label, seen = ip.FlowLabel(), true
		}
	}
}

// kconfigHZ returns CONFIG_HZ from the kernel's config (/proc/config.gz or
// /boot), or 0 when the kernel does not expose it.
func kconfigHZ(t testing.TB) int {
	t.Helper()
	out, err := exec.Command("sh", "-c", "zcat /proc/config.gz 2>/dev/null || cat /boot/config-$(uname -r) 2>/dev/null").Output()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "CONFIG_HZ="); ok {
			hz, _ := strconv.Atoi(v)
			return hz
		}
	}
	return 0
}

// optNet is testnet's three hosts plus what the option tests route over:
//   - the server's second link, eth1 (203.0.113.2/24, 2001:db8:3::2/64) to the
//     router's s1, with a route back to the client over it that loses to eth0's (metric 2000);
//   - a reverse-path filter in the router: a segment arriving on the wrong
//     link for its source is dropped, as a strict uRPF router does;
//   - the client's second address (192.0.2.100, 2001:db8:1::100), which the
//     server reaches only through table 100, selected by fwmark 0x64; the
//     main table sends it into a veth pair leading nowhere, where it vanishes.
type optNet struct {
	*testnet.Net
	ServerEth1V4, ServerEth1V6 netip.Addr
	ClientMarkV4, ClientMarkV6 netip.Addr
	Eth1                       int // eth1's index in the server
}

const optMark = 0x64

func newOptNet(t testing.TB) *optNet {
	t.Helper()
	n := testnet.New(t)
	o := &optNet{
		Net:          n,
		ServerEth1V4: netip.MustParseAddr("203.0.113.2"), ServerEth1V6: netip.MustParseAddr("2001:db8:3::2"),
		ClientMarkV4: netip.MustParseAddr("192.0.2.100"), ClientMarkV6: netip.MustParseAddr("2001:db8:1::100"),
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
`)
	o.Server.Exec(t, "ip", "-6", "rule", "add", "fwmark", "0x64", "lookup", "100")
	batch(n.Client, `addr add 192.0.2.100/24 dev eth0 preferred_lft 0
addr add 2001:db8:1::100/64 dev eth0 nodad preferred_lft 0
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

// tosPair: the server socket sets a DSCP (IP_TOS / IPV6_TCLASS).
func tosPair(t testing.TB, o *optNet, network string) (net.Conn, net.Conn) {
	laddr, opt := net.JoinHostPort(o.ServerV4.String(), "0"), optInt(unix.IPPROTO_IP, unix.IP_TOS, 0xb8)
	if network == "tcp6" {
		laddr, opt = net.JoinHostPort(o.ServerV6.String(), "0"), optInt(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, 0xb8)
	}
	return optPair(t, o.Server, o.Client, network, laddr, netip.Addr{}, []sockopt{opt}, nil)
}

var optKinds = []optKind{
	{"timestamps", "tcp4", plainPair}, {"timestamps", "tcp6", plainPair},
	{"fwmark", "tcp4", markPair}, {"fwmark", "tcp6", markPair},
	{"bound device", "tcp4", devicePair}, {"bound device", "tcp6", devicePair},
	{"tos", "tcp4", tosPair}, {"tos", "tcp6", tosPair},
}

// TestProbeFollowsSocket probes a healthy connection of each kind and checks
// the probe on the wire at the peer: it arrived, it carries the socket's
// timestamp option (TSecr = ts_recent, a TSval the peer's PAWS accepts),
// TOS / traffic class and flow label, and the peer answered.
func TestProbeFollowsSocket(t *testing.T) {
	needRoot(t)
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
				if st.TOS != 0xb8 && st.TClass != 0xb8 {
					t.Fatalf("server socket TOS %#x TClass %#x, want 0xb8", st.TOS, st.TClass)
				}
			}
			if !st.TSOK {
				t.Fatal("timestamps not negotiated; the test proves nothing")
			}
			tg := optTarget(t, o.Server, server)
			// The kernel's own segment, for the header fields to compare with.
			capt.drain(t)
			exchange(t, server, client)
			own := from(capt.drain(t), tg.Local, tg.Remote)
			if len(own) == 0 {
				t.Fatal("captured none of the server's own segments at the client")
			}
			kernel := own[len(own)-1]
			st = readState(t, seq, o.Server, server)
			paws := netstat(t, o.Client, "PAWSEstab")

			res, err := New(fastConfig(), seq, nil).Probe(context.Background(), tg)
			if err != nil || res.Verdict != Alive || res.Mode != InWindow {
				t.Fatalf("probe: %+v %v", res, err)
			}
			var probes []wireSeg
			for _, s := range from(capt.drain(t), tg.Local, tg.Remote) {
				if s.payload == 0 && s.seq == st.SndUna-1 {
					probes = append(probes, s)
				}
			}
			if len(probes) == 0 {
				t.Fatal("no probe reached the client")
			}
			p := probes[0]
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
// fwmark and bound-device connections, probed with the plain route (as
// before probes copied the socket's routing), stay silent: confirmed false
// ghosts. With the socket's routing they are alive (TestProbeFollowsSocket).
func TestProbeRoutingMatters(t *testing.T) {
	needRoot(t)
	seq := prSeqReader(t)
	o := newOptNet(t)
	for _, k := range optKinds[2:6] {
		t.Run(k.name+" "+k.network, func(t *testing.T) {
			server, client := k.pair(t, o, k.network)
			exchange(t, server, client)
			tg := optTarget(t, o.Server, server)
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

// plainRoute hides a socket's routing from the prober.
type plainRoute struct{ SeqReader }

func (p plainRoute) ReadSeq(ctx context.Context, ns string, cookies []uint64) (map[uint64]SeqState, error) {
	m, err := p.SeqReader.ReadSeq(ctx, ns, cookies)
	for k, st := range m {
		st.Mark, st.BoundIf = 0, 0
		m[k] = st
	}
	return m, err
}

// TestProbeTCPMD5Pair: a TCP-MD5 connection is never probed, so never a
// ghost; `ghostd probe` shows why. Probed anyway (the flag hidden), the peer
// drops every probe (TcpExtTCPMD5NotFound) and the verdict is a confirmed,
// false, silent: the bug the flag prevents.
func TestProbeTCPMD5Pair(t *testing.T) {
	needRoot(t)
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
			tg := optTarget(t, o.Server, server)
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
	needRoot(t)
	seq := prSeqReader(t)
	o := newOptNet(t)
	var targets []Target
	var conns [][2]net.Conn
	for _, k := range optKinds {
		s, c := k.pair(t, o, k.network)
		targets = append(targets, optTarget(t, o.Server, s))
		conns = append(conns, [2]net.Conn{s, c})
	}
	for _, network := range networks {
		laddr, srvAddr, cliAddr := net.JoinHostPort(o.ServerV4.String(), "0"), o.ServerV4, o.ClientV4
		if network == "tcp6" {
			laddr, srvAddr, cliAddr = net.JoinHostPort(o.ServerV6.String(), "0"), o.ServerV6, o.ClientV6
		}
		s, c := optPair(t, o.Server, o.Client, network, laddr, netip.Addr{},
			[]sockopt{optMD5(cliAddr, "k")}, []sockopt{optMD5(srvAddr, "k")})
		targets = append(targets, optTarget(t, o.Server, s))
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

// TestProbeStaleTSvalIsDropped is the control for the PAWS check above: a
// probe whose TSval lags the socket's clock is rejected by the peer's PAWS
// (its counters move), which is why a probe's TSval must be on the socket's
// clock. The verdict is logged: on kernels that drop PAWS-failed old ACKs
// without an answer, it is a false silent.
func TestProbeStaleTSvalIsDropped(t *testing.T) {
	needRoot(t)
	seq := prSeqReader(t)
	o := newOptNet(t)
	server, client := optPair(t, o.Server, o.Client, "tcp4", net.JoinHostPort(o.ServerV4.String(), "0"), o.ClientV4, nil, nil)
	exchange(t, server, client)
	tg := optTarget(t, o.Server, server)
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
	needRoot(t)
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
			tg := optTarget(t, n.Server, server)
			capt.drain(t)
			exchange(t, server, client)
			own := from(capt.drain(t), tg.Local, tg.Remote)
			if len(own) == 0 {
				t.Fatal("captured none of the server's own segments")
			}
			last := own[len(own)-1].ts.Val
			st = readState(t, seq, n.Server, server)
			paws := netstat(t, n.Client, "PAWSEstab") + netstat(t, n.Client, "PAWSOldAck")
			res, err := New(fastConfig(), seq, nil).Probe(context.Background(), tg)
			if err != nil || res.Verdict != Alive {
				t.Fatalf("probe: %+v %v", res, err)
			}
			var probe *wireSeg
			for _, s := range from(capt.drain(t), tg.Local, tg.Remote) {
				if s.payload == 0 && s.hasTS && s.seq == st.SndUna-1 {
					probe = &s
					break
				}
			}
			if probe == nil {
				t.Fatal("no probe captured at the client")
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
