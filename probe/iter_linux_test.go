package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

// The tests in this file load the real program into the real kernel; they
// open loopback connections in namespaces they create and compare what the
// iterator reports with the segments captured on the wire.

func iterNeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads a BPF program and creates network namespaces")
	}
}

func iterReader(t testing.TB) *IterReader {
	t.Helper()
	iterNeedRoot(t)
	r, err := NewIterReader()
	if err != nil {
		t.Fatalf("NewIterReader: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

func iterCookie(t testing.TB, c any) uint64 {
	t.Helper()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("iterCookie: %T", c)
	}
	return testnet.Cookie(t, sc)
}

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

func TestIterMatchesWire(t *testing.T) {
	r := iterReader(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			ns := testnet.NewNS(t, "it")
			capt := iterCaptureLo(t, ns)
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			ln := ns.Listen(t, network, addr)
			conn := iterDial(t, ns, ln)
			cp, sp := iterPort(conn.client.LocalAddr()), iterPort(conn.server.LocalAddr())

			iterSend(t, conn.client, conn.server, 1000)
			iterSend(t, conn.server, conn.client, 3000)
			var seen []iterSeg
			cli, srv := iterReadQuiet(t, r, ns, capt, &seen, conn)
			c2s, s2c := iterDirection(seen, cp, sp), iterDirection(seen, sp, cp)
			if len(c2s.segs) < 3 || len(s2c.segs) < 2 {
				t.Fatalf("captured too little: %d client and %d server segments", len(c2s.segs), len(s2c.segs))
			}
			iterCheckWire(t, "client", cli, c2s, s2c)
			iterCheckWire(t, "server", srv, s2c, c2s)
			if cli.SndNxt-c2s.synOpt.seq != 1+1000 || srv.SndNxt-s2c.synOpt.seq != 1+3000 {
				t.Errorf("bytes sent since the SYN: client %d, server %d; want 1001 and 3001",
					cli.SndNxt-c2s.synOpt.seq, srv.SndNxt-s2c.synOpt.seq)
			}

			// Sending N bytes advances SND.NXT by exactly N, and the peer's RCV.NXT too.
			const n = 12345
			iterSend(t, conn.client, conn.server, n)
			cli2, srv2 := iterReadQuiet(t, r, ns, capt, &seen, conn)
			if got := cli2.SndNxt - cli.SndNxt; got != n {
				t.Errorf("client SndNxt advanced by %d after sending %d bytes", got, n)
			}
			if got := srv2.RcvNxt - srv.RcvNxt; got != n {
				t.Errorf("server RcvNxt advanced by %d after receiving %d bytes", got, n)
			}
			if cli2.SndUna != cli2.SndNxt {
				t.Errorf("client SndUna %d != SndNxt %d after the ACK", cli2.SndUna, cli2.SndNxt)
			}
			c2s, s2c = iterDirection(seen, cp, sp), iterDirection(seen, sp, cp)
			iterCheckWire(t, "client after send", cli2, c2s, s2c)
			iterCheckWire(t, "server after send", srv2, s2c, c2s)
		})
	}
}

func TestIterUnackedData(t *testing.T) {
	// SND.UNA stays behind SND.NXT while the peer's ACKs do not arrive
	// (nftables drops everything the server sends).
	r := iterReader(t)
	ns := testnet.NewNS(t, "it")
	ln := ns.Listen(t, "tcp4", "127.0.0.1:0")
	conn := iterDial(t, ns, ln)
	iterSend(t, conn.client, conn.server, 100)
	iterQuiet(t, conn.client, conn.server)
	ck := iterCookie(t, conn.client)
	before, err := r.ReadSeq(context.Background(), ns.Path, []uint64{ck})
	if err != nil {
		t.Fatal(err)
	}
	// Drop everything the server port sends: its ACKs never arrive.
	sp := iterPort(conn.server.LocalAddr())
	ns.Nft(t, fmt.Sprintf("table inet gdit {\n chain out {\n  type filter hook output priority 0;\n  tcp sport %d drop\n }\n}\n", sp))
	if _, err := conn.client.Write(make([]byte, 500)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	after, err := r.ReadSeq(context.Background(), ns.Path, []uint64{ck})
	if err != nil {
		t.Fatal(err)
	}
	b, a := before[ck], after[ck]
	if a.SndNxt-b.SndNxt != 500 || a.SndUna != b.SndUna {
		t.Errorf("with ACKs dropped: SndNxt advanced %d (want 500), SndUna moved %d (want 0)", a.SndNxt-b.SndNxt, a.SndUna-b.SndUna)
	}
}

func TestIterWantedOnly(t *testing.T) {
	r := iterReader(t)
	ns := testnet.NewNS(t, "it")
	ln := ns.Listen(t, "tcp4", "127.0.0.1:0")
	a, b := iterDial(t, ns, ln), iterDial(t, ns, ln)
	ca, cb := iterCookie(t, a.client), iterCookie(t, b.client)
	cl := iterCookie(t, ln.(*net.TCPListener))

	got, err := r.ReadSeq(context.Background(), ns.Path, []uint64{ca, cl, ca, 0, 1<<64 - 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[ca]; !ok || len(got) != 1 {
		t.Errorf("wanted %d (and a listener, a duplicate, bogus cookies); got %v", ca, iterKeys(got))
	}
	if _, ok := got[cb]; ok {
		t.Errorf("unwanted cookie %d returned", cb)
	}

	// The map is emptied after a pass: the next pass does not report ca.
	got, err = r.ReadSeq(context.Background(), ns.Path, []uint64{cb})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{cb}, iterKeys(got)); diff != "" {
		t.Errorf("second pass (-want +got):\n%s", diff)
	}

	got, err = r.ReadSeq(context.Background(), ns.Path, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("no cookies: got %v, %v", got, err)
	}
}

func TestIterSkipsTimeWait(t *testing.T) {
	r := iterReader(t)
	ns := testnet.NewNS(t, "it")
	ln := ns.Listen(t, "tcp4", "127.0.0.1:0")
	c := iterDial(t, ns, ln)
	ck := iterCookie(t, c.client)
	c.client.Close() // active close: the client's socket ends in TIME_WAIT
	c.server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.server.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("server read after client close: %v", err)
	}
	c.server.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(ns.Exec(t, "ss", "-tanH", "state", "time-wait"), "127.0.0.1") {
		if time.Now().After(deadline) {
			t.Fatal("no TIME_WAIT socket appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, err := r.ReadSeq(context.Background(), ns.Path, []uint64{ck})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("TIME_WAIT socket reported: %+v", got)
	}
}

func TestIterNamespaces(t *testing.T) {
	r := iterReader(t)
	nsA, nsB := testnet.NewNS(t, "it"), testnet.NewNS(t, "it")
	lnA := nsA.Listen(t, "tcp4", "127.0.0.1:0")
	lnB := nsB.Listen(t, "tcp4", "127.0.0.1:0")
	a, b := iterDial(t, nsA, lnA), iterDial(t, nsB, lnB)
	// The same 4-tuple can exist in both namespaces; only cookies tell them apart.
	ca := []uint64{iterCookie(t, a.client), iterCookie(t, a.server)}
	cb := []uint64{iterCookie(t, b.client), iterCookie(t, b.server)}
	all := append(append([]uint64{}, ca...), cb...)

	for _, tc := range []struct {
		name, path string
		want       []uint64
	}{
		{"A", nsA.Path, ca},
		{"B", nsB.Path, cb},
		{"own", "", nil},
	} {
		got, err := r.ReadSeq(context.Background(), tc.path, all)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := append([]uint64{}, tc.want...)
		if want == nil {
			want = []uint64{}
		}
		if diff := cmp.Diff(iterSorted(want), iterKeys(got)); diff != "" {
			t.Errorf("namespace %s (-want +got):\n%s", tc.name, diff)
		}
	}

	// The calling thread's namespace is untouched by the passes.
	var own, after unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &own); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := r.ReadSeq(context.Background(), nsA.Path, ca); err != nil {
			t.Fatal(err)
		}
		if err := unix.Stat("/proc/thread-self/ns/net", &after); err != nil {
			t.Fatal(err)
		}
		if after.Ino != own.Ino {
			t.Fatalf("caller's thread left in netns %d, want %d", after.Ino, own.Ino)
		}
	}

	if _, err := r.ReadSeq(context.Background(), filepath.Join(t.TempDir(), "missing"), all); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing netns path: %v, want ErrNotExist", err)
	}
}

// TestIterConcurrent runs passes over two namespaces from several goroutines
// at once: each caller gets exactly its namespace's sockets.
func TestIterConcurrent(t *testing.T) {
	r := iterReader(t)
	var nss [2]*testnet.NS
	var want [2][]uint64
	var all []uint64
	for i := range nss {
		nss[i] = testnet.NewNS(t, "it")
		ln := nss[i].Listen(t, "tcp4", "127.0.0.1:0")
		for range 3 {
			c := iterDial(t, nss[i], ln)
			want[i] = append(want[i], iterCookie(t, c.client), iterCookie(t, c.server))
		}
		all = append(all, want[i]...)
	}
	errc := make(chan error, 8)
	for g := range cap(errc) {
		go func() {
			i := g % 2
			for range 3 {
				got, err := r.ReadSeq(context.Background(), nss[i].Path, all)
				if err != nil {
					errc <- err
					return
				}
				if diff := cmp.Diff(iterSorted(want[i]), iterKeys(got)); diff != "" {
					errc <- fmt.Errorf("namespace %d (-want +got):\n%s", i, diff)
					return
				}
			}
			errc <- nil
		}()
	}
	for range cap(errc) {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

// iterSnapshot is the part of tcp_info that a read-only observer must not change.
type iterSnapshot struct {
	State, Options                             uint8
	Retransmits, Probes, Backoff               uint8
	Snd_mss, Rcv_mss, Unacked, Sacked, Lost    uint32
	Retrans, Fackets, Pmtu, Rcv_ssthresh       uint32
	Snd_ssthresh, Snd_cwnd, Advmss, Reordering uint32
	Rcv_space, Total_retrans                   uint32
	Bytes_acked, Bytes_received                uint64
	Segs_out, Segs_in, Data_segs_in            uint32
	Data_segs_out                              uint32
	Delivered, Bytes_sent, Bytes_retrans       uint64
	Snd_wnd, Rcv_wnd                           uint32
}

func iterSnap(t testing.TB, c net.Conn) iterSnapshot {
	i := testnet.TCPInfo(t, c)
	return iterSnapshot{
		State: i.State, Options: i.Options,
		Retransmits: i.Retransmits, Probes: i.Probes, Backoff: i.Backoff,
		Snd_mss: i.Snd_mss, Rcv_mss: i.Rcv_mss, Unacked: i.Unacked, Sacked: i.Sacked, Lost: i.Lost,
		Retrans: i.Retrans, Fackets: i.Fackets, Pmtu: i.Pmtu, Rcv_ssthresh: i.Rcv_ssthresh,
		Snd_ssthresh: i.Snd_ssthresh, Snd_cwnd: i.Snd_cwnd, Advmss: i.Advmss, Reordering: i.Reordering,
		Rcv_space: i.Rcv_space, Total_retrans: i.Total_retrans,
		Bytes_acked: i.Bytes_acked, Bytes_received: i.Bytes_received,
		Segs_out: i.Segs_out, Segs_in: i.Segs_in, Data_segs_in: i.Data_segs_in, Data_segs_out: i.Data_segs_out,
		Delivered: uint64(i.Delivered), Bytes_sent: i.Bytes_sent, Bytes_retrans: i.Bytes_retrans,
		Snd_wnd: i.Snd_wnd, Rcv_wnd: i.Rcv_wnd,
	}
}

func TestIterReadOnly(t *testing.T) {
	r := iterReader(t)
	ns := testnet.NewNS(t, "it")
	capt := iterCaptureLo(t, ns)
	ln := ns.Listen(t, "tcp4", "127.0.0.1:0")
	conn := iterDial(t, ns, ln)
	iterSend(t, conn.client, conn.server, 2000)
	iterSend(t, conn.server, conn.client, 2000)
	iterQuiet(t, conn.client, conn.server)
	time.Sleep(50 * time.Millisecond)
	capt.drain(t)

	cookies := []uint64{iterCookie(t, conn.client), iterCookie(t, conn.server)}
	beforeC, beforeS := iterSnap(t, conn.client), iterSnap(t, conn.server)
	first, err := r.ReadSeq(context.Background(), ns.Path, cookies)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		got, err := r.ReadSeq(context.Background(), ns.Path, cookies)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(first, got); diff != "" {
			t.Fatalf("a later pass saw different state (-first +later):\n%s", diff)
		}
	}
	if diff := cmp.Diff(beforeC, iterSnap(t, conn.client)); diff != "" {
		t.Errorf("client tcp_info changed by reading (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(beforeS, iterSnap(t, conn.server)); diff != "" {
		t.Errorf("server tcp_info changed by reading (-before +after):\n%s", diff)
	}
	if segs := capt.drain(t); len(segs) != 0 {
		t.Errorf("reading sent %d segments: %+v", len(segs), segs)
	}
	// The owners still work.
	iterSend(t, conn.client, conn.server, 10)
	iterSend(t, conn.server, conn.client, 10)
}

func TestIterContext(t *testing.T) {
	r := iterReader(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.ReadSeq(ctx, "", []uint64{1}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
}

func TestIterClose(t *testing.T) {
	iterNeedRoot(t)
	r, err := NewIterReader()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := r.ReadSeq(context.Background(), "", []uint64{1}); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadSeq after Close: %v", err)
	}
	var zero IterReader
	if _, err := zero.ReadSeq(context.Background(), "", []uint64{1}); !errors.Is(err, ErrNoSeq) {
		t.Errorf("ReadSeq on a zero IterReader: %v", err)
	}
}

func TestIterNoBTF(t *testing.T) {
	// Runs unprivileged too: the BTF check comes first.
	empty := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(empty, []byte("not BTF"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, says string
	}{
		{"/nonexistent/btf/vmlinux", "no BTF at /nonexistent/btf/vmlinux"},
		{empty, "read BTF " + empty},
	} {
		r, err := newIterReader(tc.path)
		if err == nil {
			r.Close()
			t.Fatalf("%s: loaded", tc.path)
		}
		if !errors.Is(err, ErrNoSeq) || !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q: want one line wrapping ErrNoSeq that says %q", tc.path, err, tc.says)
		}
	}
}

func iterKeys(m map[uint64]SeqState) []uint64 {
	keys := make([]uint64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return iterSorted(keys)
}

func iterSorted(s []uint64) []uint64 {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// TestIterMissingCaps re-runs this test binary as nobody with only some
// capabilities and checks that NewIterReader says which ones are missing.
func TestIterMissingCaps(t *testing.T) {
	if os.Getenv("GHOSTD_IT_CAPS_CHILD") == "1" {
		r, err := NewIterReader()
		if err == nil {
			r.Close()
			fmt.Println("loaded")
			os.Exit(0)
		}
		fmt.Printf("errors.Is(ErrNoSeq)=%v: %v\n", errors.Is(err, ErrNoSeq), err)
		os.Exit(0)
	}
	iterNeedRoot(t)
	// nobody cannot reach the test binary in go's 0700 build directory: copy it.
	dir, err := os.MkdirTemp("", "gd-it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "probe.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		caps []uintptr
	}{
		{"none", nil},
		{"CAP_BPF only", []uintptr{unix.CAP_BPF}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, "-test.run=^TestIterMissingCaps$", "-test.count=1")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GHOSTD_IT_CAPS_CHILD=1")
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
				AmbientCaps: tc.caps,
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v: %s", err, out)
			}
			line := strings.SplitN(string(out), "\n", 2)[0]
			if !strings.HasPrefix(line, "errors.Is(ErrNoSeq)=true: ") || !strings.Contains(line, "missing CAP_BPF and CAP_PERFMON") {
				t.Errorf("without the capabilities NewIterReader said %q", line)
			}
			t.Log(line)
		})
	}
}

// TestIterVerifierRejects feeds the loader a kernel BTF whose tcp_sock has
// none of the fields the program reads: CO-RE cannot relocate them, the
// verifier refuses the poisoned instructions, and the error says so.
func TestIterVerifierRejects(t *testing.T) {
	iterNeedRoot(t)
	kernel, err := btf.LoadSpec(DefaultBTFPath)
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	var target *btf.Func
	if err := kernel.TypeByName("bpf_iter_tcp", &target); err != nil {
		t.Fatal(err)
	}
	hollow := &btf.Struct{Name: "tcp_sock", Size: 8, Members: []btf.Member{{Name: "unrelated", Type: &btf.Int{Name: "u64", Size: 8}}}}
	b, err := btf.NewBuilder([]btf.Type{target, hollow}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := newIterReader(path)
	if err == nil {
		r.Close()
		t.Fatal("loaded against a tcp_sock without snd_una")
	}
	if !errors.Is(err, ErrNoSeq) || !strings.Contains(err.Error(), "verifier rejected the program") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q: want one line wrapping ErrNoSeq that blames the verifier", err)
	}
	t.Log(err)

	// Without bpf_iter_tcp in the BTF the kernel predates iter/tcp (5.9).
	b, err = btf.NewBuilder([]btf.Type{hollow}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err = b.Marshal(nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = newIterReader(path)
	if err == nil {
		r.Close()
		t.Fatal("loaded without bpf_iter_tcp")
	}
	if !errors.Is(err, ErrNoSeq) || !strings.Contains(err.Error(), "kernel has no iter/tcp BPF iterator (needs Linux 5.9+)") {
		t.Errorf("error %q: want ErrNoSeq blaming the kernel version", err)
	}
}
