package inventory

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// formatSocket renders every decoded field, optional tcp_info fields as
// "absent" when the kernel's struct is too short for them.
func formatSocket(s *Socket) string {
	var b strings.Builder
	fmt.Fprintf(&b, "netns=%d family=%d state=%v timer=%d retrans=%d expires=%d rq=%d wq=%d uid=%d inode=%d if=%d cookie=%#x",
		s.Netns, s.Family, s.State, s.Timer, s.Retrans, s.Expires, s.RQueue, s.WQueue, s.UID, s.Inode, s.Ifindex, s.Cookie)
	fmt.Fprintf(&b, " local=%v remote=%v mapped=%v", s.Local, s.Remote, s.Mapped())
	i := &s.Info
	if !i.Valid() {
		fmt.Fprintf(&b, "\n  tcp_info absent (len %d)\n", i.Len)
		return b.String()
	}
	fmt.Fprintf(&b, "\n  tcp_info len=%d state=%d ca=%d retransmits=%d probes=%d backoff=%d options=%#x wscale=%d/%d rto=%d snd_mss=%d rcv_mss=%d unacked=%d lost=%d retrans=%d",
		i.Len, i.State, i.CAState, i.Retransmits, i.Probes, i.Backoff, i.Options, i.SndWScale, i.RcvWScale, i.RTO, i.SndMSS, i.RcvMSS, i.Unacked, i.Lost, i.Retrans)
	fmt.Fprintf(&b, " last_data_sent=%d last_ack_sent=%d last_data_recv=%d last_ack_recv=%d rtt=%d rttvar=%d cwnd=%d total_retrans=%d",
		i.LastDataSent, i.LastAckSent, i.LastDataRecv, i.LastAckRecv, i.RTT, i.RTTVar, i.SndCwnd, i.TotalRetrans)
	opt := func(name string, v uint64, ok bool) {
		if ok {
			fmt.Fprintf(&b, " %s=%d", name, v)
		} else {
			fmt.Fprintf(&b, " %s=absent", name)
		}
	}
	v64, ok := i.BytesAcked()
	opt("bytes_acked", v64, ok)
	v64, ok = i.BytesReceived()
	opt("bytes_received", v64, ok)
	v32, ok := i.SndWnd()
	opt("snd_wnd", uint64(v32), ok)
	v32, ok = i.RcvWnd()
	opt("rcv_wnd", uint64(v32), ok)
	b.WriteString("\n")
	return b.String()
}

// truncateInfo rewrites a dump so that every tcp_info attribute is cut to n
// bytes, fixing nla_len and nlmsg_len: what an older kernel (192 bytes on
// 4.10–4.17, 232 on 5.4–6.1) would have sent for the same sockets.
func truncateInfo(b []byte, n int) []byte {
	var out []byte
	for len(b) >= nlmsgHdrLen {
		l := int(ne.Uint32(b))
		msg := b[:l]
		b = b[min(align4(l), len(b)):]
		if ne.Uint16(msg[4:]) != sockDiagByFamily {
			out = append(out, msg...)
			continue
		}
		start := len(out)
		out = append(out, msg[:nlmsgHdrLen+diagMsgLen]...)
		for a := msg[nlmsgHdrLen+diagMsgLen:]; len(a) >= nlaHdrLen; {
			al := int(ne.Uint16(a))
			attr := a[:al]
			a = a[min(align4(al), len(a)):]
			if ne.Uint16(attr[2:])&nlaTypeMask == attrInfo && al-nlaHdrLen > n {
				attr = append([]byte(nil), attr[:nlaHdrLen+n]...)
				ne.PutUint16(attr, uint16(nlaHdrLen+n))
			}
			out = append(out, attr...)
			for len(out)%4 != 0 {
				out = append(out, 0)
			}
		}
		ne.PutUint32(out[start:], uint32(len(out)-start))
	}
	return out
}

// encodeSocket appends one SOCK_DIAG_BY_FAMILY message for s, the way the
// kernel lays it out (tcp_info of s.Info.Len bytes).
func encodeSocket(b []byte, s *Socket, seq uint32) []byte {
	start := len(b)
	b = append(b, make([]byte, nlmsgHdrLen+diagMsgLen)...)
	h := b[start:]
	ne.PutUint16(h[4:], sockDiagByFamily)
	ne.PutUint16(h[6:], 0x2) // NLM_F_MULTI
	ne.PutUint32(h[8:], seq)
	m := h[nlmsgHdrLen:]
	m[offFamily], m[offState], m[offTimer], m[offRetrans] = s.Family, uint8(s.State), uint8(s.Timer), s.Retrans
	binary.BigEndian.PutUint16(m[offSport:], s.Local.Port())
	binary.BigEndian.PutUint16(m[offDport:], s.Remote.Port())
	putAddr(m[offSrc:offSrc+16], s.Family, s.Local)
	putAddr(m[offDst:offDst+16], s.Family, s.Remote)
	ne.PutUint32(m[offIf:], s.Ifindex)
	ne.PutUint32(m[offCookie:], uint32(s.Cookie))
	ne.PutUint32(m[offCookie+4:], uint32(s.Cookie>>32))
	ne.PutUint32(m[offExpires:], s.Expires)
	ne.PutUint32(m[offRQueue:], s.RQueue)
	ne.PutUint32(m[offWQueue:], s.WQueue)
	ne.PutUint32(m[offUID:], s.UID)
	ne.PutUint32(m[offInode:], s.Inode)
	if s.Info.Len > 0 {
		b = appendAttr(b, attrInfo, encodeTCPInfo(&s.Info))
	}
	ne.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

func appendAttr(b []byte, typ uint16, v []byte) []byte {
	b = ne.AppendUint16(b, uint16(nlaHdrLen+len(v)))
	b = ne.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func encodeTCPInfo(i *TCPInfo) []byte {
	b := make([]byte, max(int(i.Len), OffRcvWnd+4))
	b[tiState], b[tiCAState], b[tiRetransmits], b[tiProbes], b[tiBackoff], b[tiOptions] = i.State, i.CAState, i.Retransmits, i.Probes, i.Backoff, i.Options
	if bigEndian {
		b[tiWScale] = i.SndWScale<<4 | i.RcvWScale&0xf
	} else {
		b[tiWScale] = i.RcvWScale<<4 | i.SndWScale&0xf
	}
	for off, v := range map[int]uint32{
		tiRTO: i.RTO, tiSndMSS: i.SndMSS, tiRcvMSS: i.RcvMSS, tiUnacked: i.Unacked, tiLost: i.Lost,
		tiRetrans: i.Retrans, tiLastDataSent: i.LastDataSent, tiLastAckSent: i.LastAckSent,
		tiLastDataRecv: i.LastDataRecv, tiLastAckRecv: i.LastAckRecv, tiRTT: i.RTT, tiRTTVar: i.RTTVar,
		tiSndCwnd: i.SndCwnd, tiTotalRetrans: i.TotalRetrans, OffSndWnd: i.sndWnd, OffRcvWnd: i.rcvWnd,
	} {
		ne.PutUint32(b[off:], v)
	}
	ne.PutUint64(b[OffBytesAcked:], i.bytesAcked)
	ne.PutUint64(b[OffBytesReceived:], i.bytesReceived)
	return b[:i.Len]
}

func nlmsg(typ uint16, seq uint32, payload []byte) []byte {
	b := ne.AppendUint32(nil, uint32(nlmsgHdrLen+len(payload)))
	b = ne.AppendUint16(b, typ)
	b = ne.AppendUint16(b, 0x2)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func doneMsg(seq uint32, code int32) []byte {
	return nlmsg(nlmsgDone, seq, ne.AppendUint32(nil, uint32(code)))
}

func errorMsg(seq uint32, errno syscall.Errno) []byte {
	p := ne.AppendUint32(nil, uint32(-int32(errno)))
	return nlmsg(nlmsgError, seq, append(p, make([]byte, nlmsgHdrLen)...))
}

// sampleSockets are hand-made sockets for round trips and fake kernels.
func sampleSockets() []Socket {
	long := TCPInfo{Len: 280, State: 1, CAState: 2, Retransmits: 3, Probes: 4, Backoff: 5, Options: 7,
		SndWScale: 7, RcvWScale: 9, RTO: 204000, SndMSS: 1448, RcvMSS: 536, Unacked: 2, Lost: 1, Retrans: 1,
		LastDataSent: 10, LastAckSent: 11, LastDataRecv: 12, LastAckRecv: 13, RTT: 40, RTTVar: 20, SndCwnd: 10, TotalRetrans: 6}
	long.SetOptional(1<<40, 1<<33, 65535, 131072)
	short := long
	short.Len = 192
	short.SetOptional(1<<40, 1<<33, 0, 0)
	return []Socket{
		{Netns: 9, Family: FamilyInet, State: StateEstablished, Timer: TimerKeepalive, Retrans: 2, Expires: 5000,
			RQueue: 1, WQueue: 2, UID: 1000, Inode: 12345, Ifindex: 3, Cookie: 0x1122334455667788,
			Local:  netip.MustParseAddrPort("192.0.2.1:443"),
			Remote: netip.MustParseAddrPort("198.51.100.7:50000"), Info: long},
		{Netns: 9, Family: FamilyInet6, State: StateCloseWait, Cookie: 2,
			Local:  netip.MustParseAddrPort("[2001:db8::1]:22"),
			Remote: netip.MustParseAddrPort("[2001:db8::2]:60000"), Info: short},
		{Netns: 9, Family: FamilyInet6, State: StateEstablished, Cookie: 3,
			Local:  netip.MustParseAddrPort("[::ffff:203.0.113.1]:80"),
			Remote: netip.MustParseAddrPort("[::ffff:203.0.113.9]:1234"), Info: long},
		{Netns: 9, Family: FamilyInet, State: StateTimeWait, Timer: TimerTimeWait, Expires: 59000, Cookie: 4,
			Local:  netip.MustParseAddrPort("192.0.2.1:443"),
			Remote: netip.MustParseAddrPort("198.51.100.7:50001")},
	}
}

// parseAll parses b (concatenated datagrams) and copies every socket.
func parseAll(b []byte, netns uint64) ([]Socket, bool, error) {
	var got []Socket
	var s Socket
	done, err := ParseDump(b, netns, &s, func(s *Socket) error {
		got = append(got, *s)
		return nil
	})
	return got, done, err
}

var socketCmp = cmp.Options{cmp.AllowUnexported(TCPInfo{}), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })}

func TestParseDumpGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/dump-*.bin")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captured dumps: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got, done, err := parseAll(b, 4026531840)
			if err != nil || !done {
				t.Fatalf("ParseDump = done %v, %v", done, err)
			}
			var sb strings.Builder
			for i := range got {
				sb.WriteString(formatSocket(&got[i]))
			}
			golden := strings.TrimSuffix(f, ".bin") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(sb.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), sb.String()); diff != "" {
				t.Errorf("%s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// TestParseDumpCaptured checks the properties each capture was made for.
func TestParseDumpCaptured(t *testing.T) {
	load := func(name string) []Socket {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := parseAll(b, 1)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	count := func(ss []Socket, f func(*Socket) bool) int {
		n := 0
		for i := range ss {
			if f(&ss[i]) {
				n++
			}
		}
		return n
	}
	v4, v6 := load("dump-inet.bin"), load("dump-inet6.bin")
	if n := count(v4, func(s *Socket) bool {
		return s.State == StateTimeWait && s.Info.Len == 0 && s.Inode == 0 && s.Timer == TimerTimeWait
	}); n != 1 {
		t.Errorf("%d TIME_WAIT sockets without tcp_info, want 1", n)
	}
	if n := count(v4, func(s *Socket) bool { return s.State == StateEstablished && s.Info.Len == 280 }); n != 3 {
		t.Errorf("%d established IPv4 sockets with a 280-byte tcp_info, want 3", n)
	}
	if n := count(v6, func(s *Socket) bool { return s.Mapped() && s.Local.Addr().Is4In6() }); n != 1 {
		t.Errorf("%d v4-mapped sockets, want 1", n)
	}
	if n := count(v6, func(s *Socket) bool {
		return s.Family == FamilyInet6 && s.State == StateEstablished && s.Local.Addr() == netip.IPv6Loopback()
	}); n != 2 {
		t.Errorf("%d ::1 sockets, want 2", n)
	}
	// One TCPDIAG_GETSOCK walk: the same sockets as both per-family dumps.
	if all := load("dump-compat.bin"); len(all) != len(v4)+len(v6) || count(all, func(s *Socket) bool { return s.Family == FamilyInet6 }) != len(v6) {
		t.Errorf("one-walk dump has %d sockets (%d IPv6), the per-family dumps %d and %d",
			len(all), count(all, func(s *Socket) bool { return s.Family == FamilyInet6 }), len(v4), len(v6))
	}
	for name, want := range map[string][4]bool{
		// bytes_acked, bytes_received, snd_wnd, rcv_wnd
		"dump-inet-info192.bin": {true, true, false, false},
		"dump-inet-info232.bin": {true, true, true, false},
		"dump-inet.bin":         {true, true, true, true},
	} {
		for _, s := range load(name) {
			if s.Info.Len == 0 {
				continue
			}
			_, a := s.Info.BytesAcked()
			_, r := s.Info.BytesReceived()
			_, sw := s.Info.SndWnd()
			_, rw := s.Info.RcvWnd()
			if got := [4]bool{a, r, sw, rw}; got != want {
				t.Errorf("%s: len %d: optional fields present %v, want %v", name, s.Info.Len, got, want)
			}
		}
	}
}

func TestParseDumpRoundTrip(t *testing.T) {
	want := sampleSockets()
	var b []byte
	for i := range want {
		b = encodeSocket(b, &want[i], 5)
	}
	b = append(b, doneMsg(5, 0)...)
	got, done, err := parseAll(b, 9)
	if err != nil || !done {
		t.Fatalf("ParseDump = %v, %v", done, err)
	}
	if diff := cmp.Diff(want, got, socketCmp); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseDumpErrors(t *testing.T) {
	ss := sampleSockets()
	one := encodeSocket(nil, &ss[0], 1)
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), one...)) }
	tests := []struct {
		name    string
		in      []byte
		sockets int
		done    bool
		err     error // errors.Is target; nil: no error
	}{
		{name: "empty", in: nil},
		{name: "done", in: doneMsg(1, 0), done: true},
		{name: "done without payload", in: nlmsg(nlmsgDone, 1, nil), done: true},
		{name: "done with dump error", in: doneMsg(1, -int32(syscall.ENOMEM)), done: true, err: syscall.ENOMEM},
		{name: "error", in: errorMsg(1, syscall.EPERM), done: true, err: syscall.EPERM},
		{name: "ack", in: errorMsg(1, 0), done: true},
		{name: "socket then error", in: append(append([]byte(nil), one...), errorMsg(1, syscall.EBUSY)...), sockets: 1, done: true, err: syscall.EBUSY},
		{name: "noop and unknown types skipped", in: append(nlmsg(nlmsgNoop, 1, nil), nlmsg(99, 1, []byte{1, 2, 3})...)},
		{name: "short header", in: one[:10], err: ErrMalformed},
		{name: "truncated message", in: one[:len(one)-8], err: ErrMalformed},
		{name: "nlmsg_len below header", in: mutate(func(b []byte) []byte { ne.PutUint32(b, 8); return b }), err: ErrMalformed},
		{name: "short inet_diag_msg", in: nlmsg(sockDiagByFamily, 1, make([]byte, 40)), err: ErrMalformed},
		{name: "bad family", in: mutate(func(b []byte) []byte { b[nlmsgHdrLen] = 1; return b }), err: ErrMalformed},
		{name: "attribute past message", in: mutate(func(b []byte) []byte {
			ne.PutUint16(b[nlmsgHdrLen+diagMsgLen:], 0x7fff)
			return b
		}), err: ErrMalformed},
		{name: "attribute below header", in: mutate(func(b []byte) []byte {
			ne.PutUint16(b[nlmsgHdrLen+diagMsgLen:], 2)
			return b
		}), err: ErrMalformed},
		{name: "short error", in: nlmsg(nlmsgError, 1, []byte{1}), err: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, done, err := parseAll(tt.in, 1)
			if len(got) != tt.sockets || done != tt.done {
				t.Errorf("sockets %d done %v, want %d %v", len(got), done, tt.sockets, tt.done)
			}
			if tt.err == nil && err != nil || tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("err = %v, want %v", err, tt.err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "inventory: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestParseDumpShortInfoIsAbsent(t *testing.T) {
	s := sampleSockets()[0]
	b := truncateInfo(encodeSocket(nil, &s, 1), MinInfoLen-1)
	got, _, err := parseAll(b, 9)
	if err != nil || len(got) != 1 {
		t.Fatalf("ParseDump = %d sockets, %v", len(got), err)
	}
	if got[0].Info != (TCPInfo{}) || got[0].Cookie != s.Cookie {
		t.Errorf("a %d-byte tcp_info should be absent but keep the socket: %+v", MinInfoLen-1, got[0])
	}
}

func TestParseDumpSeqFilter(t *testing.T) {
	ss := sampleSockets()
	b := encodeSocket(nil, &ss[0], 7) // stale, from an aborted request
	b = append(b, doneMsg(7, 0)...)
	b = encodeSocket(b, &ss[1], 8)
	b = append(b, doneMsg(8, 0)...)
	var s Socket
	done, n, err := parseDump(b, 9, 8, &s, func(*Socket) error { return nil })
	if !done || n != 1 || err != nil || s.Cookie != ss[1].Cookie {
		t.Errorf("parseDump(seq 8) = %v %d %v cookie %#x; want the one socket of request 8", done, n, err, s.Cookie)
	}
}

func TestParseDumpStopsOnCallbackError(t *testing.T) {
	ss := sampleSockets()
	var b []byte
	for i := range ss {
		b = encodeSocket(b, &ss[i], 1)
	}
	stop := errors.New("stop")
	calls := 0
	var s Socket
	done, err := ParseDump(b, 0, &s, func(*Socket) error { calls++; return stop })
	if done || err != stop || calls != 1 {
		t.Errorf("ParseDump = %v, %v after %d calls; want false, stop, 1", done, err, calls)
	}
}

// benchDatagram packs the captured sockets' messages, repeated, into one
// 32 KiB datagram as the kernel would, and returns it with its socket count.
func benchDatagram(tb testing.TB) ([]byte, int) {
	var msgs [][]byte
	for _, name := range []string{"testdata/dump-inet.bin", "testdata/dump-inet6.bin"} {
		b, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		for len(b) >= nlmsgHdrLen {
			l := int(ne.Uint32(b))
			if ne.Uint16(b[4:]) == sockDiagByFamily {
				msgs = append(msgs, b[:align4(l)])
			}
			b = b[align4(l):]
		}
	}
	var d []byte
	n := 0
	for i := 0; ; i++ {
		m := msgs[i%len(msgs)]
		if len(d)+len(m) > recvBufLen {
			break
		}
		d = append(d, m...)
		n++
	}
	return d, n
}

func TestParseDumpDoesNotAllocate(t *testing.T) {
	d, _ := benchDatagram(t)
	var s Socket
	fn := func(*Socket) error { return nil }
	if a := testing.AllocsPerRun(100, func() { ParseDump(d, 1, &s, fn) }); a != 0 {
		t.Errorf("ParseDump allocates %.1f times per 32 KiB datagram, want 0", a)
	}
}

func BenchmarkParseDump(b *testing.B) {
	d, n := benchDatagram(b)
	var s Socket
	var sink uint64
	fn := func(s *Socket) error { sink += s.Cookie; return nil }
	b.SetBytes(int64(len(d)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := ParseDump(d, 1, &s, fn); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/socket")
	_ = sink
}
