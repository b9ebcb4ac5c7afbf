package inventory

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
)

// nltestTransport is a fake kernel for a Conn, scripted with an nltest.Func
// (so nltest.Multipart, nltest.Error and nltest.CheckRequest work as with a
// netlink.Conn). The live transport hands the Conn raw datagrams, and so
// does this one: the messages a Func returns are marshalled and packed into
// datagrams of at most 32 KiB, as the kernel does, and go through the same
// in-place parser. A Func's error becomes the error of the next receive;
// when the queue is empty a blocking receive calls the Func with no request
// (as nltest does for multicast), which lets a script deliver a dump in
// several parts or fail in the middle.
type nltestTransport struct {
	fn     nltest.Func
	queue  [][]byte
	err    error
	seq    uint32 // of the last request, stamped on replies that carry none
	reqs   []netlink.Message
	closed bool
	// oversize makes the next datagram claim this many bytes (MSG_TRUNC).
	oversize int
}

func (f *nltestTransport) send(m netlink.Message) error {
	m.Header.Length = uint32(nlmsgHdrLen + len(m.Data))
	m.Data = append([]byte(nil), m.Data...)
	f.reqs = append(f.reqs, m)
	f.seq = m.Header.Sequence
	msgs, err := f.fn([]netlink.Message{m})
	f.enqueue(msgs)
	f.err = err
	return nil
}

func (f *nltestTransport) enqueue(msgs []netlink.Message) {
	var d []byte
	for _, m := range msgs {
		if m.Header.Sequence == 0 {
			m.Header.Sequence = f.seq
		}
		b := marshalMsg(m)
		if len(d)+len(b) > recvBufLen {
			f.queue = append(f.queue, d)
			d = nil
		}
		d = append(d, b...)
	}
	if len(d) > 0 {
		f.queue = append(f.queue, d)
	}
}

func marshalMsg(m netlink.Message) []byte {
	b := ne.AppendUint32(nil, uint32(nlmsgHdrLen+len(m.Data)))
	b = ne.AppendUint16(b, uint16(m.Header.Type))
	b = ne.AppendUint16(b, uint16(m.Header.Flags))
	b = ne.AppendUint32(b, m.Header.Sequence)
	b = ne.AppendUint32(b, m.Header.PID)
	b = append(b, m.Data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func (f *nltestTransport) recv(b []byte, wait bool, _ time.Time) (int, error) {
	for {
		if len(f.queue) > 0 {
			d := f.queue[0]
			f.queue = f.queue[1:]
			n := copy(b, d)
			if f.oversize > 0 {
				n, f.oversize = f.oversize, 0
			}
			return n, nil
		}
		if f.err != nil {
			err := f.err
			f.err = nil
			return 0, err
		}
		if !wait {
			return 0, syscall.EAGAIN
		}
		msgs, err := f.fn(nil)
		if err != nil {
			return 0, err
		}
		if len(msgs) == 0 {
			return 0, errors.New("fake kernel: nothing more to say")
		}
		f.enqueue(msgs)
	}
}

func (f *nltestTransport) close() error { f.closed = true; return nil }

func fakeConn(fn nltest.Func) (*Conn, *nltestTransport) {
	ft := &nltestTransport{fn: fn}
	return newConn(ft), ft
}

// socketMsg is the kernel's message for s.
func socketMsg(s *Socket) netlink.Message {
	b := encodeSocket(nil, s, 0)
	return netlink.Message{
		Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Multi},
		Data:   b[nlmsgHdrLen:],
	}
}

// dumpReply answers a dump request as the kernel does: a TCPDIAG_GETSOCK
// request with every socket, a SOCK_DIAG_BY_FAMILY one with the sockets of
// its family, each reply carrying the request's message type.
func dumpReply(socks []Socket) nltest.Func {
	return func(req []netlink.Message) ([]netlink.Message, error) {
		var msgs []netlink.Message
		typ := req[0].Header.Type
		for i := range socks {
			if typ == tcpdiagGetSock || socks[i].Family == req[0].Data[0] {
				m := socketMsg(&socks[i])
				m.Header.Type = typ
				msgs = append(msgs, m)
			}
		}
		if len(msgs) == 0 { // nltest.Multipart leaves a lone message alone
			return []netlink.Message{{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi}}}, nil
		}
		return nltest.Multipart(append(msgs, netlink.Message{}))
	}
}

func collect(t *testing.T, c *Conn) ([]Socket, int, error) {
	t.Helper()
	var got []Socket
	n, err := c.Dump(9, AllStates, func(s *Socket) error {
		got = append(got, *s)
		return nil
	})
	return got, n, err
}

func TestFakeDump(t *testing.T) {
	socks := sampleSockets()
	fn := nltest.CheckRequest(
		[]netlink.HeaderType{tcpdiagGetSock},
		[]netlink.HeaderFlags{netlink.Request | netlink.Dump},
		dumpReply(socks))
	c, ft := fakeConn(fn)
	got, n, err := collect(t, c)
	if err != nil {
		t.Fatal(err)
	}
	// One walk, both families, in the kernel's order.
	if diff := cmp.Diff(socks, got, socketCmp); diff != "" || n != 4 {
		t.Errorf("Dump = %d (-want +got):\n%s", n, diff)
	}
	if len(ft.reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(ft.reqs))
	}
	// struct inet_diag_req: family, src_len, dst_len, ext, id, states, dbs.
	wantReq := make([]byte, compatReqLen)
	wantReq[0], wantReq[3] = FamilyInet, extInfo
	ne.PutUint32(wantReq[44:], ^uint32(0))
	ne.PutUint32(wantReq[48:], ^uint32(0))
	ne.PutUint32(wantReq[52:], uint32(AllStates))
	if diff := cmp.Diff(wantReq, ft.reqs[0].Data); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if err := c.Close(); err != nil || !ft.closed {
		t.Errorf("Close = %v, closed %v", err, ft.closed)
	}
}

// A kernel that refuses TCPDIAG_GETSOCK gets one SOCK_DIAG_BY_FAMILY dump
// per family, from then on.
func TestFakeDumpFallback(t *testing.T) {
	socks := sampleSockets()
	reply := dumpReply(socks)
	c, ft := fakeConn(func(req []netlink.Message) ([]netlink.Message, error) {
		if req[0].Header.Type == tcpdiagGetSock {
			return nltest.Error(int(syscall.EINVAL), req)
		}
		return reply(req)
	})
	for range 2 {
		ft.reqs = nil
		got, n, err := collect(t, c)
		if err != nil {
			t.Fatal(err)
		}
		want := []Socket{socks[0], socks[3], socks[1], socks[2]} // AF_INET, then AF_INET6
		if diff := cmp.Diff(want, got, socketCmp); diff != "" || n != 4 {
			t.Errorf("Dump = %d (-want +got):\n%s", n, diff)
		}
	}
	if len(ft.reqs) != 2 {
		t.Fatalf("second Dump sent %d requests, want 2 (no more TCPDIAG_GETSOCK)", len(ft.reqs))
	}
	for i, fam := range []uint8{FamilyInet, FamilyInet6} {
		wantReq := make([]byte, diagReqLen)
		wantReq[0], wantReq[1], wantReq[2] = fam, ipprotoTCP, extInfo
		ne.PutUint32(wantReq[4:], uint32(AllStates))
		ne.PutUint32(wantReq[48:], ^uint32(0))
		ne.PutUint32(wantReq[52:], ^uint32(0))
		if ft.reqs[i].Header.Type != sockDiagByFamily {
			t.Errorf("request %d type %d", i, ft.reqs[i].Header.Type)
		}
		if diff := cmp.Diff(wantReq, ft.reqs[i].Data); diff != "" {
			t.Errorf("request %d (-want +got):\n%s", i, diff)
		}
	}
	if ft.reqs[0].Header.Sequence == ft.reqs[1].Header.Sequence {
		t.Error("two requests share a sequence number")
	}
}

func TestFakeDumpManyDatagrams(t *testing.T) {
	// 300 sockets of ~400 bytes: several 32 KiB datagrams per family.
	base := sampleSockets()[0]
	var socks []Socket
	for i := range 300 {
		s := base
		s.Cookie = uint64(i + 1)
		socks = append(socks, s)
	}
	c, ft := fakeConn(dumpReply(socks))
	_ = ft
	got, n, err := collect(t, c)
	if err != nil || n != 300 || len(got) != 300 || got[299].Cookie != 300 {
		t.Fatalf("Dump = %d, %v", n, err)
	}
}

func TestFakeDumpErrors(t *testing.T) {
	socks := sampleSockets()
	tests := []struct {
		name    string
		fn      nltest.Func
		want    error
		sockets int
	}{
		{
			name: "EPERM",
			fn:   func(req []netlink.Message) ([]netlink.Message, error) { return nltest.Error(int(syscall.EPERM), req) },
			want: syscall.EPERM,
		},
		{
			name: "error inside a multipart dump",
			fn: func(req []netlink.Message) ([]netlink.Message, error) {
				e, _ := nltest.Error(int(syscall.EBUSY), req)
				return []netlink.Message{socketMsg(&socks[0]), socketMsg(&socks[3]), e[0]}, nil
			},
			want:    syscall.EBUSY,
			sockets: 2,
		},
		{
			name: "dump failed in NLMSG_DONE",
			fn: func(req []netlink.Message) ([]netlink.Message, error) {
				return []netlink.Message{socketMsg(&socks[0]), {
					Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi},
					Data:   doneMsg(0, -int32(syscall.ENOMEM))[nlmsgHdrLen:],
				}}, nil
			},
			want:    syscall.ENOMEM,
			sockets: 1,
		},
		{
			name: "ENOBUFS in the middle",
			fn: func(req []netlink.Message) ([]netlink.Message, error) {
				if req == nil {
					return nil, syscall.ENOBUFS
				}
				return []netlink.Message{socketMsg(&socks[0])}, nil
			},
			want:    syscall.ENOBUFS,
			sockets: 1,
		},
		{
			name: "truncated message",
			fn: func(req []netlink.Message) ([]netlink.Message, error) {
				m := socketMsg(&socks[0])
				m.Data = m.Data[:diagMsgLen-10]
				return []netlink.Message{m}, nil
			},
			want: ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := fakeConn(tt.fn)
			got, n, err := collect(t, c)
			if !errors.Is(err, tt.want) {
				t.Errorf("Dump error = %v, want %v", err, tt.want)
			}
			if n != tt.sockets || len(got) != tt.sockets {
				t.Errorf("Dump saw %d sockets (callback %d), want %d", n, len(got), tt.sockets)
			}
		})
	}
}

func TestFakeDumpTruncatedDatagram(t *testing.T) {
	c, ft := fakeConn(dumpReply(sampleSockets()))
	ft.oversize = recvBufLen + 100
	if _, _, err := collect(t, c); !errors.Is(err, ErrMalformed) {
		t.Errorf("Dump of a datagram larger than the buffer = %v, want ErrMalformed", err)
	}
}

// After a dump fails half way, its leftovers must neither reach the next
// dump's callback nor be counted there.
func TestFakeDumpRecoversAfterAbort(t *testing.T) {
	socks := sampleSockets()
	calls := 0
	var staleSeq uint32
	fn := func(req []netlink.Message) ([]netlink.Message, error) {
		calls++
		switch {
		case calls == 1: // first dump: one socket, then the receive fails
			staleSeq = req[0].Header.Sequence
			return []netlink.Message{socketMsg(&socks[0])}, nil
		case calls == 2:
			return nil, syscall.ENOBUFS
		case calls == 3: // the new AF_INET dump; the old dump's tail arrives first
			old := socketMsg(&socks[3])
			old.Header.Sequence = staleSeq
			done := netlink.Message{Header: netlink.Header{Type: netlink.Done, Sequence: staleSeq}}
			msgs, _ := dumpReply(socks)(req)
			return append([]netlink.Message{old, done}, msgs...), nil
		default:
			return dumpReply(socks)(req)
		}
	}
	c, _ := fakeConn(fn)
	if _, _, err := collect(t, c); !errors.Is(err, syscall.ENOBUFS) {
		t.Fatalf("first Dump = %v, want ENOBUFS", err)
	}
	got, n, err := collect(t, c)
	if err != nil || n != 4 || len(got) != 4 {
		t.Fatalf("second Dump = %d sockets (%d), %v; want 4", n, len(got), err)
	}
}

func TestFakeLookup(t *testing.T) {
	s := sampleSockets()[2] // v4-mapped IPv6
	var req netlink.Message
	reply := func(answer func([]netlink.Message) ([]netlink.Message, error)) nltest.Func {
		return nltest.CheckRequest([]netlink.HeaderType{sockDiagByFamily}, []netlink.HeaderFlags{netlink.Request},
			func(r []netlink.Message) ([]netlink.Message, error) {
				req = r[0]
				return answer(r)
			})
	}
	c, _ := fakeConn(reply(func([]netlink.Message) ([]netlink.Message, error) {
		m := socketMsg(&s)
		m.Header.Flags = 0
		return []netlink.Message{m}, nil
	}))
	got, ok, err := c.Lookup(9, &s)
	if err != nil || !ok {
		t.Fatalf("Lookup = %v, %v", ok, err)
	}
	if diff := cmp.Diff(s, got, socketCmp); diff != "" {
		t.Errorf("Lookup (-want +got):\n%s", diff)
	}
	d := req.Data
	if d[0] != FamilyInet6 || d[1] != ipprotoTCP || d[2] != extInfo {
		t.Errorf("request header % x", d[:4])
	}
	id := d[8:]
	if binary.BigEndian.Uint16(id[0:]) != s.Local.Port() || binary.BigEndian.Uint16(id[2:]) != s.Remote.Port() ||
		netip.AddrFrom16([16]byte(id[4:20])) != s.Local.Addr() || netip.AddrFrom16([16]byte(id[20:36])) != s.Remote.Addr() ||
		ne.Uint32(id[36:]) != s.Ifindex || uint64(ne.Uint32(id[40:]))|uint64(ne.Uint32(id[44:]))<<32 != s.Cookie {
		t.Errorf("request id does not name the socket: % x", id[:48])
	}

	for _, tt := range []struct {
		errno syscall.Errno
		ok    bool
		err   error
	}{
		{syscall.ENOENT, false, nil},
		{syscall.ESTALE, false, nil},
		{syscall.EPERM, false, syscall.EPERM},
	} {
		c, _ := fakeConn(reply(func(r []netlink.Message) ([]netlink.Message, error) { return nltest.Error(int(tt.errno), r) }))
		_, ok, err := c.Lookup(9, &s)
		if ok != tt.ok || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("Lookup answered %v = %v, %v; want %v, %v", tt.errno, ok, err, tt.ok, tt.err)
		}
	}
}

func TestFakeLookupIPv4Request(t *testing.T) {
	s := sampleSockets()[0]
	var req netlink.Message
	c, _ := fakeConn(func(r []netlink.Message) ([]netlink.Message, error) {
		req = r[0]
		return nltest.Error(int(syscall.ENOENT), r)
	})
	if _, ok, err := c.Lookup(9, &s); ok || err != nil {
		t.Fatalf("Lookup = %v, %v", ok, err)
	}
	id := req.Data[8:]
	want := make([]byte, 16)
	copy(want, s.Local.Addr().AsSlice())
	if diff := cmp.Diff(want, id[4:20]); diff != "" {
		t.Errorf("IPv4 source must fill the first 4 bytes (-want +got):\n%s", diff)
	}
}

func TestFakeDestroy(t *testing.T) {
	s := sampleSockets()[0]
	tests := []struct {
		errno syscall.Errno
		want  []error
	}{
		{0, nil},
		{syscall.ENOENT, []error{syscall.ENOENT}},
		{syscall.EPERM, []error{syscall.EPERM}},
		{syscall.EOPNOTSUPP, []error{syscall.EOPNOTSUPP, ErrDestroyUnsupported}},
	}
	for _, tt := range tests {
		t.Run(tt.errno.Error(), func(t *testing.T) {
			var req netlink.Message
			fn := nltest.CheckRequest([]netlink.HeaderType{sockDestroy}, []netlink.HeaderFlags{netlink.Request | netlink.Acknowledge},
				func(r []netlink.Message) ([]netlink.Message, error) {
					req = r[0]
					return nltest.Error(int(tt.errno), r)
				})
			c, _ := fakeConn(fn)
			err := c.Destroy(&s)
			if tt.want == nil && err != nil {
				t.Fatalf("Destroy = %v", err)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Destroy = %v, want it to wrap %v", err, w)
				}
			}
			if got := uint64(ne.Uint32(req.Data[48:])) | uint64(ne.Uint32(req.Data[52:]))<<32; got != s.Cookie {
				t.Errorf("destroy request cookie %#x, want %#x", got, s.Cookie)
			}
		})
	}
}
