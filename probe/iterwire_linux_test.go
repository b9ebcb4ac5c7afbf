package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

// iterConn is one loopback connection inside a test namespace.
type iterConn struct {
	client, server net.Conn
}

func iterDial(t testing.TB, ns *testnet.NS, ln net.Listener) iterConn {
	t.Helper()
	c := ns.Dial(t, ln.Addr().Network(), ln.Addr().String())
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return iterConn{client: c, server: s}
}

// iterSend writes n bytes from one end and reads them at the other.
func iterSend(t testing.TB, from, to net.Conn, n int) {
	t.Helper()
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(i)
	}
	deadline := time.Now().Add(5 * time.Second)
	from.SetDeadline(deadline)
	to.SetDeadline(deadline)
	if _, err := from.Write(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(to, buf); err != nil {
		t.Fatal(err)
	}
}

// iterQuiet waits until neither end has unacknowledged data.
func iterQuiet(t testing.TB, conns ...net.Conn) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		busy := false
		for _, c := range conns {
			busy = busy || testnet.TCPInfo(t, c).Unacked != 0
		}
		if !busy {
			return
		}
		if time.Now().After(end) {
			t.Fatal("connections never went quiet")
		}
	}
}

// iterSeg is one TCP segment as captured on lo.
type iterSeg struct {
	src, dst      uint16
	seq, ack      uint32
	flags         uint8
	win           uint16
	payload       int
	wscale        int // -1 when absent
	tsval, tsecr  uint32
	ts            bool
	syn, fin, rst bool
}

// end is the sequence number after the segment.
func (s iterSeg) end() uint32 {
	n := uint32(s.payload)
	if s.syn {
		n++
	}
	if s.fin {
		n++
	}
	return s.seq + n
}

// iterParseFrame parses an Ethernet frame from lo carrying IPv4 or IPv6 TCP.
func iterParseFrame(b []byte) (iterSeg, bool) {
	if len(b) < 14 {
		return iterSeg{}, false
	}
	etype := binary.BigEndian.Uint16(b[12:14])
	b = b[14:]
	var tcp []byte
	switch etype {
	case unix.ETH_P_IP:
		if len(b) < 20 || b[9] != unix.IPPROTO_TCP {
			return iterSeg{}, false
		}
		ihl := int(b[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || tot < ihl || tot > len(b) {
			return iterSeg{}, false
		}
		tcp = b[ihl:tot]
	case unix.ETH_P_IPV6:
		if len(b) < 40 || b[6] != unix.IPPROTO_TCP {
			return iterSeg{}, false
		}
		pl := int(binary.BigEndian.Uint16(b[4:6]))
		if 40+pl > len(b) {
			return iterSeg{}, false
		}
		tcp = b[40 : 40+pl]
	default:
		return iterSeg{}, false
	}
	if len(tcp) < 20 {
		return iterSeg{}, false
	}
	off := int(tcp[12]>>4) * 4
	if off < 20 || off > len(tcp) {
		return iterSeg{}, false
	}
	s := iterSeg{
		src:     binary.BigEndian.Uint16(tcp[0:2]),
		dst:     binary.BigEndian.Uint16(tcp[2:4]),
		seq:     binary.BigEndian.Uint32(tcp[4:8]),
		ack:     binary.BigEndian.Uint32(tcp[8:12]),
		flags:   tcp[13],
		win:     binary.BigEndian.Uint16(tcp[14:16]),
		payload: len(tcp) - off,
		wscale:  -1,
	}
	s.fin, s.syn, s.rst = s.flags&0x01 != 0, s.flags&0x02 != 0, s.flags&0x04 != 0
	for opts := tcp[20:off]; len(opts) > 0; {
		switch kind := opts[0]; kind {
		case 0:
			opts = nil
			continue
		case 1:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || int(opts[1]) < 2 || int(opts[1]) > len(opts) {
			break
		}
		o := opts[:opts[1]]
		switch {
		case o[0] == 3 && len(o) == 3:
			s.wscale = int(o[2])
		case o[0] == 8 && len(o) == 10:
			s.ts = true
			s.tsval = binary.BigEndian.Uint32(o[2:6])
			s.tsecr = binary.BigEndian.Uint32(o[6:10])
		}
		opts = opts[len(o):]
	}
	return s, true
}

// iterCapture records the segments leaving lo in one namespace (AF_PACKET:
// every loopback segment is seen once as outgoing).
type iterCapture struct {
	fd int
}

func iterCaptureLo(t testing.TB, ns *testnet.NS) *iterCapture {
	t.Helper()
	c := &iterCapture{fd: -1}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(iterHtons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		c.fd = fd
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: iterHtons(unix.ETH_P_ALL), Ifindex: lo.Index})
	})
	if c.fd >= 0 {
		t.Cleanup(func() { unix.Close(c.fd) })
	}
	if err != nil {
		t.Fatalf("AF_PACKET capture in %s: %v", ns.Name, err)
	}
	return c
}

func iterHtons(v uint16) uint16 { return v<<8 | v>>8 }

// drain returns the TCP segments captured since the last call.
func (c *iterCapture) drain(t testing.TB) []iterSeg {
	t.Helper()
	var segs []iterSeg
	buf := make([]byte, 70000)
	for {
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return segs
		}
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype != unix.PACKET_OUTGOING {
			continue
		}
		if s, ok := iterParseFrame(buf[:n]); ok {
			segs = append(segs, s)
		}
	}
}

// iterWire is what the capture says about one direction of a connection.
type iterWire struct {
	segs   []iterSeg // from → to
	synOpt iterSeg   // the SYN or SYN-ACK sent in this direction
	last   iterSeg
	tsvals map[uint32]bool
}

func iterDirection(segs []iterSeg, from, to uint16) iterWire {
	w := iterWire{tsvals: map[uint32]bool{}}
	for _, s := range segs {
		if s.src != from || s.dst != to {
			continue
		}
		w.segs = append(w.segs, s)
		if s.syn {
			w.synOpt = s
		}
		if s.ts {
			w.tsvals[s.tsval] = true
		}
		w.last = s
	}
	return w
}

func iterPort(a net.Addr) uint16 { return uint16(a.(*net.TCPAddr).Port) }

// iterReadQuiet reads the two ends of conn once no segment is in flight, and
// returns the wire as captured from the start up to that read.
func iterReadQuiet(t *testing.T, r *IterReader, ns *testnet.NS, capt *iterCapture, seen *[]iterSeg, conn iterConn) (cli, srv SeqState) {
	t.Helper()
	ck, sk := iterCookie(t, conn.client), iterCookie(t, conn.server)
	for try := 0; ; try++ {
		iterQuiet(t, conn.client, conn.server)
		time.Sleep(50 * time.Millisecond) // let delayed ACKs and window updates out
		*seen = append(*seen, capt.drain(t)...)
		got, err := r.ReadSeq(context.Background(), ns.Path, []uint64{ck, sk})
		if err != nil {
			t.Fatal(err)
		}
		more := capt.drain(t)
		*seen = append(*seen, more...)
		if len(more) == 0 {
			if len(got) != 2 {
				t.Fatalf("ReadSeq returned %d of 2 sockets: %+v", len(got), got)
			}
			return got[ck], got[sk]
		}
		if try == 10 {
			t.Fatalf("segments kept arriving around the read: %+v", more)
		}
	}
}

// iterCheckWire compares one end's SeqState with the segments it sent (out)
// and received (in).
func iterCheckWire(t *testing.T, name string, st SeqState, out, in iterWire) {
	t.Helper()
	check := func(field string, want, got uint64) {
		t.Helper()
		if want != got {
			t.Errorf("%s %s: wire says %d, iterator %d", name, field, want, got)
		}
	}
	check("SndNxt (last sent seq+len)", uint64(out.last.end()), uint64(st.SndNxt))
	check("RcvNxt (last received seq+len)", uint64(in.last.end()), uint64(st.RcvNxt))
	check("SndUna (last ACK received)", uint64(in.last.ack), uint64(st.SndUna))
	check("SndWScale (peer's SYN option)", uint64(in.synOpt.wscale), uint64(st.SndWScale))
	check("RcvWScale (own SYN option)", uint64(out.synOpt.wscale), uint64(st.RcvWScale))
	check("SndWnd (peer's last window << scale)", uint64(in.last.win)<<st.SndWScale, uint64(st.SndWnd))
	check("RcvWnd >> scale (own last window)", uint64(out.last.win), uint64(st.RcvWnd>>st.RcvWScale))
	if !st.TSOK || !out.synOpt.ts || !in.synOpt.ts {
		t.Errorf("%s TSOK %v, SYN timestamps %v/%v", name, st.TSOK, out.synOpt.ts, in.synOpt.ts)
	}
	if !in.tsvals[st.TSRecent] {
		t.Errorf("%s TSRecent %d is not a TSval the peer sent (%v)", name, st.TSRecent, in.tsvals)
	}
	// Linux sends TSval = tcp clock (CLOCK_MONOTONIC in ms) + tsoffset.
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		t.Fatal(err)
	}
	age := uint32(now.Nano()/1e6) - (out.last.tsval - st.TSOffset)
	if age > 10_000 {
		t.Errorf("%s last TSval %d - TSOffset %d is %d ms away from CLOCK_MONOTONIC", name, out.last.tsval, st.TSOffset, age)
	}
}
