package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/probe/internal/wire"
)

// Helpers for the tests of probes that follow their socket's options and
// routing (probeopts_linux_test.go, iteropts_linux_test.go, probets_linux_test.go).

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
	return func(fd int) error { return testnet.SetMD5Key(fd, peer, key) }
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

// readState reads c's SeqState through the iterator.
func readState(t testing.TB, r SeqReader, ns *testnet.NS, c net.Conn) SeqState {
	t.Helper()
	tg := targetIn(t, ns, c)
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
	win          uint16
	payload      int
	tos          uint8 // IPv4 TOS or IPv6 traffic class
	label        uint32
	ts           wire.Timestamp
	hasTS        bool
	wscale       int // the SYN's window scale; -1 when absent
	ifindex      int
	pktType      uint8
	capturedWhen time.Time
}

// end is the sequence number after the segment.
func (s wireSeg) end() uint32 {
	n := uint32(s.payload)
	if s.flags&wire.FlagSYN != 0 {
		n++
	}
	if s.flags&wire.FlagFIN != 0 {
		n++
	}
	return s.seq + n
}

// wireCapture is an AF_PACKET SOCK_DGRAM socket in one namespace seeing the
// TCP segments in and out of it.
type wireCapture struct {
	fd       int
	outgoing bool // keep only what leaves: on lo, every segment once
}

// captureIn captures on every interface of ns.
func captureIn(t testing.TB, ns *testnet.NS) *wireCapture {
	t.Helper()
	return openCapture(t, ns, "")
}

// captureLo captures what leaves lo in ns: every loopback segment, once.
func captureLo(t testing.TB, ns *testnet.NS) *wireCapture {
	t.Helper()
	c := openCapture(t, ns, "lo")
	c.outgoing = true
	return c
}

// openCapture opens a capture in ns, bound to the interface ifname ("":
// all of them).
func openCapture(t testing.TB, ns *testnet.NS, ifname string) *wireCapture {
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
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20); err != nil {
			return err
		}
		if ifname == "" {
			return nil
		}
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
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
		if c.outgoing && (ll == nil || ll.Pkttype != unix.PACKET_OUTGOING) {
			continue
		}
		proto, src, dst, payload, err := wire.IPPayload(buf[:n])
		if err != nil || proto != wire.ProtoTCP || len(payload) < wire.TCPMinSize {
			continue
		}
		tcp := wire.TCPHeader(payload)
		s := wireSeg{
			src: netip.AddrPortFrom(src, tcp.SrcPort()), dst: netip.AddrPortFrom(dst, tcp.DstPort()),
			seq: tcp.Seq(), ack: tcp.Ack(), flags: tcp.Flags(), win: tcp.Window(),
			payload: len(payload) - tcp.HeaderLen(), wscale: -1, capturedWhen: time.Now(),
		}
		if src.Is4() {
			s.tos = wire.IPv4Header(buf).TOS()
		} else {
			s.tos, s.label = wire.IPv6Header(buf).TrafficClass(), wire.IPv6Header(buf).FlowLabel()
		}
		s.ts, s.hasTS = tcp.Timestamp()
		if shift, ok := tcp.WScale(); ok {
			s.wscale = int(shift)
		}
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

// probeOnWire is one probe of a healthy connection as a capture at the peer
// saw it.
type probeOnWire struct {
	tg     Target
	kernel wireSeg  // the last segment the socket's kernel sent before the probe
	st     SeqState // the socket's state the probe started from
	res    Result
	probes []wireSeg // the segments seen from the socket with no payload and seq SND.UNA−1
}

// probeCaptured exchanges data on server (in ns) and client, then probes
// server's end once with fastConfig while capt watches at the peer;
// beforeProbe runs just before the probe. The probe must find the peer
// alive, and something the kernel sent must have been captured.
func probeCaptured(t *testing.T, seq SeqReader, capt *wireCapture, ns *testnet.NS, server, client net.Conn, beforeProbe func()) probeOnWire {
	t.Helper()
	pw := probeOnWire{tg: targetIn(t, ns, server)}
	capt.drain(t)
	exchange(t, server, client)
	own := from(capt.drain(t), pw.tg.Local, pw.tg.Remote)
	if len(own) == 0 {
		t.Fatal("captured none of the server's own segments at the client")
	}
	pw.kernel = own[len(own)-1]
	pw.st = readState(t, seq, ns, server)
	beforeProbe()
	var err error
	if pw.res, err = New(fastConfig(), seq, nil).Probe(context.Background(), pw.tg); err != nil || pw.res.Verdict != Alive {
		t.Fatalf("probe: %+v %v", pw.res, err)
	}
	for _, s := range from(capt.drain(t), pw.tg.Local, pw.tg.Remote) {
		if s.payload == 0 && s.seq == pw.st.SndUna-1 {
			pw.probes = append(pw.probes, s)
		}
	}
	if len(pw.probes) == 0 {
		t.Fatal("no probe reached the client")
	}
	return pw
}
