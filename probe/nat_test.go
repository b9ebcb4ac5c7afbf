package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/probe/internal/wire"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func tup(src, dst string) ctTuple { return ctTuple{ap(src), ap(dst)} }

func TestNATFromEntry(t *testing.T) {
	tests := []struct {
		name        string
		local, rem  string
		orig, reply ctTuple
		want        natFlow
		ok          bool
	}{{
		name: "not translated", local: "192.0.2.2:40000", rem: "198.51.100.2:80",
		orig: tup("192.0.2.2:40000", "198.51.100.2:80"), reply: tup("198.51.100.2:80", "192.0.2.2:40000"),
	}, {
		name: "dnat in output to a service VIP", local: "192.0.2.2:40000", rem: "203.0.113.10:80",
		orig: tup("192.0.2.2:40000", "203.0.113.10:80"), reply: tup("198.51.100.2:8080", "192.0.2.2:40000"),
		want: natFlow{key: newFlowKey(ap("192.0.2.2:40000"), ap("198.51.100.2:8080")), kind: NATDNAT}, ok: true,
	}, {
		name: "masquerade: address and port", local: "203.0.113.50:33000", rem: "198.51.100.2:80",
		orig: tup("203.0.113.50:33000", "198.51.100.2:80"), reply: tup("198.51.100.2:80", "192.0.2.2:40001"),
		want: natFlow{key: newFlowKey(ap("192.0.2.2:40001"), ap("198.51.100.2:80")), kind: NATSNAT}, ok: true,
	}, {
		name: "dnat and snat", local: "[2001:db8:5::50]:33000", rem: "[2001:db8:3::10]:80",
		orig: tup("[2001:db8:5::50]:33000", "[2001:db8:3::10]:80"), reply: tup("[2001:db8:2::2]:8080", "[2001:db8:1::2]:40001"),
		want: natFlow{key: newFlowKey(ap("[2001:db8:1::2]:40001"), ap("[2001:db8:2::2]:8080")), kind: NATDNAT + "+" + NATSNAT}, ok: true,
	}, {
		name: "redirect to a local proxy", local: "192.0.2.2:40000", rem: "203.0.113.10:80",
		orig: tup("192.0.2.2:40000", "203.0.113.10:80"), reply: tup("127.0.0.1:15001", "192.0.2.2:40000"),
		want: natFlow{key: newFlowKey(ap("192.0.2.2:40000"), ap("127.0.0.1:15001")), kind: NATRedirect}, ok: true,
	}, {
		name: "redirect over IPv6", local: "[2001:db8:1::2]:40000", rem: "[2001:db8:3::10]:80",
		orig: tup("[2001:db8:1::2]:40000", "[2001:db8:3::10]:80"), reply: tup("[::1]:15001", "[2001:db8:1::2]:40000"),
		want: natFlow{key: newFlowKey(ap("[2001:db8:1::2]:40000"), ap("[::1]:15001")), kind: NATRedirect}, ok: true,
	}, {
		// A server socket behind a port redirect in PREROUTING: its own
		// segments match the entry's reply direction; answers travel orig.
		name: "server behind a redirect in prerouting", local: "198.51.100.2:8080", rem: "192.0.2.2:40000",
		orig: tup("192.0.2.2:40000", "198.51.100.2:80"), reply: tup("198.51.100.2:8080", "192.0.2.2:40000"),
		want: natFlow{key: newFlowKey(ap("198.51.100.2:80"), ap("192.0.2.2:40000")), kind: NATSNAT}, ok: true,
	}, {
		name: "an entry of another connection", local: "192.0.2.2:40000", rem: "203.0.113.10:80",
		orig: tup("192.0.2.2:40002", "203.0.113.10:80"), reply: tup("198.51.100.2:8080", "192.0.2.2:40002"),
	}, {
		name: "v4-mapped socket, IPv4 entry", local: "[::ffff:192.0.2.2]:40000", rem: "[::ffff:203.0.113.10]:80",
		orig: tup("192.0.2.2:40000", "203.0.113.10:80"), reply: tup("198.51.100.2:8080", "192.0.2.2:40000"),
		want: natFlow{key: newFlowKey(ap("192.0.2.2:40000"), ap("198.51.100.2:8080")), kind: NATDNAT}, ok: true,
	}, {
		name: "reply in another family", local: "192.0.2.2:40000", rem: "203.0.113.10:80",
		orig: tup("192.0.2.2:40000", "203.0.113.10:80"), reply: tup("[2001:db8:2::2]:8080", "[2001:db8:1::2]:40000"),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := natFromEntry(newFlowKey(ap(tt.local), ap(tt.rem)), tt.orig, tt.reply)
			if ok != tt.ok || got != tt.want {
				t.Errorf("natFromEntry = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
			if ok != got.translated() {
				t.Errorf("translated() = %v with ok %v", got.translated(), ok)
			}
		})
	}
}

// ctEntryMessage builds what the kernel answers to a lookup: an entry
// (IPCTNL_MSG_CT_NEW) with the request's sequence number.
func ctEntryMessage(t testing.TB, seq uint32, orig, reply ctTuple) []byte {
	t.Helper()
	// The request encoder writes the same nested tuple as the kernel.
	o, err := appendCTRequest(nil, seq, flowKey{orig.src, orig.dst}, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := appendCTRequest(nil, seq, flowKey{reply.src, reply.dst}, false)
	if err != nil {
		t.Fatal(err)
	}
	hdr := nlmsgHdrLen + nfgenHdrLen
	origAttr := o[hdr:]
	replyAttr := slices.Clone(r[hdr:])
	binary.NativeEndian.PutUint16(replyAttr[2:4], binary.NativeEndian.Uint16(replyAttr[2:4])&^0x3fff|ctaTupleReply)
	msg := slices.Clone(o[:hdr])
	msg = append(msg, origAttr...)
	msg = append(msg, replyAttr...)
	binary.NativeEndian.PutUint32(msg[0:4], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:6], nfnlSubsysCTNetlink<<8|ipctnlMsgCTNew)
	binary.NativeEndian.PutUint16(msg[6:8], 0x2) // NLM_F_MULTI, as kernel 6.18 sends it
	return msg
}

func ctErrorMessage(seq uint32, errno int32) []byte {
	b := binary.NativeEndian.AppendUint32(nil, nlmsgHdrLen+4+nlmsgHdrLen)
	b = binary.NativeEndian.AppendUint16(b, nlmsgError)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint32(b, uint32(errno)) // the kernel sends -errno
	return append(b, make([]byte, nlmsgHdrLen)...)
}

func TestCTRequest(t *testing.T) {
	b, err := appendCTRequest(nil, 7, newFlowKey(ap("192.0.2.2:40000"), ap("203.0.113.10:80")), false)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		// nlmsghdr: length 72, CTNETLINK<<8|CT_GET, REQUEST|ACK, seq 7, pid 0
		72, 0, 0, 0, 0x01, 0x01, 0x05, 0x00, 7, 0, 0, 0, 0, 0, 0, 0,
		2, 0, 0, 0, // nfgenmsg: AF_INET, v0, res_id 0
		52, 0, 0x01, 0x80, // CTA_TUPLE_ORIG (nested)
		20, 0, 0x01, 0x80, // CTA_TUPLE_IP (nested)
		8, 0, 1, 0, 192, 0, 2, 2, // CTA_IP_V4_SRC
		8, 0, 2, 0, 203, 0, 113, 10, // CTA_IP_V4_DST
		28, 0, 0x02, 0x80, // CTA_TUPLE_PROTO (nested)
		5, 0, 1, 0, 6, 0, 0, 0, // CTA_PROTO_NUM tcp
		6, 0, 2, 0, 0x9c, 0x40, 0, 0, // CTA_PROTO_SRC_PORT 40000
		6, 0, 3, 0, 0, 80, 0, 0, // CTA_PROTO_DST_PORT 80
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the expected bytes are little-endian")
	}
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if _, err := appendCTRequest(nil, 1, newFlowKey(ap("192.0.2.2:1"), ap("[2001:db8::1]:2")), false); err == nil {
		t.Error("a mixed-family tuple was encoded")
	}
	d, err := appendCTRequest(nil, 9, flowKey{}, true)
	if err != nil || len(d) != nlmsgHdrLen+nfgenHdrLen || binary.NativeEndian.Uint16(d[6:8]) != nlmFRequest|nlmFDump {
		t.Errorf("dump request %x, %v", d, err)
	}
}

func TestParseCTReply(t *testing.T) {
	orig, reply := tup("192.0.2.2:40000", "203.0.113.10:80"), tup("198.51.100.2:8080", "192.0.2.2:40000")
	entry := ctEntryMessage(t, 5, orig, reply)
	var got []ctEntry
	collect := func(e ctEntry) { got = append(got, e) }

	// The entry and the ACK come in two datagrams.
	done, err := parseCTReply(entry, 5, collect)
	if err != nil || done {
		t.Fatalf("entry datagram: done %v, err %v", done, err)
	}
	if want := []ctEntry{{proto: wire.ProtoTCP, orig: orig, reply: reply}}; !slices.Equal(got, want) {
		t.Fatalf("entries %+v, want %+v", got, want)
	}
	if done, err := parseCTReply(ctErrorMessage(5, 0), 5, collect); !done || err != nil {
		t.Errorf("ACK: done %v, err %v", done, err)
	}
	// No entry: ENOENT.
	if done, err := parseCTReply(ctErrorMessage(6, -2), 6, collect); !done || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("ENOENT: done %v, err %v", done, err)
	}
	// A stale answer to an earlier request is skipped.
	got = nil
	stale := append(ctEntryMessage(t, 4, orig, reply), ctErrorMessage(4, 0)...)
	if done, err := parseCTReply(stale, 5, collect); done || err != nil || len(got) != 0 {
		t.Errorf("stale answer: done %v, err %v, entries %v", done, err, got)
	}
	// Truncated or malformed.
	for _, b := range [][]byte{entry[:10], entry[:len(entry)-3], ctErrorMessage(5, 0)[:nlmsgHdrLen+2]} {
		if _, err := parseCTReply(b, 5, collect); err == nil {
			t.Errorf("%x parsed", b)
		}
	}
	noReply := slices.Clone(entry[:nlmsgHdrLen+nfgenHdrLen+52])
	binary.NativeEndian.PutUint32(noReply[0:4], uint32(len(noReply)))
	if _, err := parseCTReply(noReply, 5, collect); !errors.Is(err, errCTMessage) {
		t.Errorf("entry without a reply tuple: %v", err)
	}
}

func FuzzParseCTReply(f *testing.F) {
	f.Add(ctEntryMessage(f, 1, tup("192.0.2.2:40000", "203.0.113.10:80"), tup("198.51.100.2:8080", "192.0.2.2:40000")))
	f.Add(ctEntryMessage(f, 1, tup("[2001:db8::1]:1", "[2001:db8::2]:2"), tup("[::1]:3", "[2001:db8::1]:1")))
	f.Add(ctErrorMessage(1, -2))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseCTReply(b, 1, func(e ctEntry) {
			checkTuples(t, e, b)
			// And round-trips through the request encoder.
			if _, err := appendCTRequest(nil, 1, flowKey{e.orig.src, e.orig.dst}, false); err != nil {
				t.Fatalf("parsed tuple does not encode: %v", err)
			}
		})
	})
}

// natPeer answers a probe as a NATed peer does on the capture: from the
// backend when the probe went to the VIP, to the masqueraded address.
func natPeer(vip, backend, local, masq netip.AddrPort) func(wire.Reply) [][]byte {
	return func(p wire.Reply) [][]byte {
		if p.Dst != vip || p.Src != local {
			return nil
		}
		b, _ := wire.AppendSegment(nil, wire.Segment{Src: backend, Dst: masq, Seq: p.Ack + 1, Ack: p.Seq + 1, Flags: wire.FlagACK})
		return [][]byte{b}
	}
}

func TestProbeNATReplyTuple(t *testing.T) {
	local, vip := ap("192.0.2.2:40000"), ap("203.0.113.10:80")
	backend, masq := ap("198.51.100.2:8080"), ap("192.0.2.9:41000")
	tg := target(1, local.String(), vip.String())
	seqs := &fakeSeq{state: map[uint64]SeqState{1: st1}}
	translated := func(string, []flowKey) ([]natFlow, error) {
		n, _ := natFromEntry(newFlowKey(local, vip), ctTuple{local, vip}, ctTuple{backend, masq})
		return []natFlow{n}, nil
	}
	tests := []struct {
		name string
		nat  func(string, []flowKey) ([]natFlow, error)
		peer func(wire.Reply) [][]byte
		want Result
	}{{
		name: "answer on the reply tuple", nat: translated, peer: natPeer(vip, backend, local, masq),
		want: Result{Verdict: Alive, Mode: InWindow, Sent: 1, Replies: 1, Confirmed: true, NAT: NATDNAT + "+" + NATSNAT},
	}, {
		name: "without the lookup the answer is missed", peer: natPeer(vip, backend, local, masq),
		want: Result{Verdict: Silent, Mode: InWindow, Sent: 2, Confirmed: true},
	}, {
		name: "a lookup error probes as before", peer: natPeer(vip, backend, local, masq),
		nat:  func(string, []flowKey) ([]natFlow, error) { return nil, syscall.EPERM },
		want: Result{Verdict: Silent, Mode: InWindow, Sent: 2, Confirmed: true},
	}, {
		// Strict: the backend's answer to another port of ours, or another
		// backend's answer to our translated port, is nobody's.
		name: "answers on other tuples are ignored", nat: translated,
		peer: func(p wire.Reply) [][]byte {
			a, _ := wire.AppendSegment(nil, wire.Segment{Src: backend, Dst: ap("192.0.2.9:41001"), Seq: p.Ack + 1, Ack: p.Seq + 1, Flags: wire.FlagACK})
			b, _ := wire.AppendSegment(nil, wire.Segment{Src: ap("198.51.100.3:8080"), Dst: masq, Seq: p.Ack + 1, Ack: p.Seq + 1, Flags: wire.FlagACK})
			return [][]byte{a, b}
		},
		want: Result{Verdict: Silent, Mode: InWindow, Sent: 2, Confirmed: true, NAT: NATDNAT + "+" + NATSNAT},
	}, {
		name: "a local peer answers on the socket's own tuple", nat: translated, peer: ackPeer,
		want: Result{Verdict: Alive, Mode: InWindow, Sent: 1, Replies: 1, Confirmed: true, NAT: NATDNAT + "+" + NATSNAT},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := newFakeConn(tt.peer)
			p := newFakeProber(t, quickConfig(), seqs, conn)
			p.nat = tt.nat
			var mu sync.Mutex
			var ports []uint16
			p.open = func(_ string, pp []uint16) (rawConn, error) {
				mu.Lock()
				ports = pp
				mu.Unlock()
				return conn, nil
			}
			got, _ := p.Probe(context.Background(), tg)
			got.RTT = 0
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if tt.want.NAT != "" {
				if !slices.Contains(ports, masq.Port()) || !slices.Contains(ports, local.Port()) {
					t.Errorf("capture ports %v, want both %d and %d", ports, local.Port(), masq.Port())
				}
			}
			if n := len(conn.probes()); n != got.Sent {
				t.Errorf("%d probes on the wire, Result.Sent %d", n, got.Sent)
			}
		})
	}
}

const procConntrack = `ipv4     2 tcp      6 431999 ESTABLISHED src=192.0.2.2 dst=203.0.113.10 sport=40000 dport=80 src=198.51.100.2 dst=192.0.2.2 sport=8080 dport=40000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 29 src=192.0.2.2 dst=203.0.113.53 sport=5353 dport=53 src=198.51.100.53 dst=192.0.2.2 sport=53 dport=5353 mark=0 use=1
ipv6     10 tcp      6 431999 ESTABLISHED src=2001:0db8:0005:0000:0000:0000:0000:0050 dst=2001:0db8:0002:0000:0000:0000:0000:0002 sport=33000 dport=443 src=2001:0db8:0002:0000:0000:0000:0000:0002 dst=2001:0db8:0001:0000:0000:0000:0000:0002 sport=443 dport=40001 [ASSURED] mark=0 use=2
ipv4     2 tcp      6 10 CLOSE src=192.0.2.2 dst=198.51.100.2 sport=40002 dport=80 src=198.51.100.2 dst=192.0.2.2 sport=80 dport=40002 mark=0 use=1
garbage
`

func TestNATFromProc(t *testing.T) {
	conns := []flowKey{
		newFlowKey(ap("192.0.2.2:40000"), ap("203.0.113.10:80")),
		newFlowKey(ap("[2001:db8:5::50]:33000"), ap("[2001:db8:2::2]:443")),
		newFlowKey(ap("192.0.2.2:40002"), ap("198.51.100.2:80")), // untranslated
		newFlowKey(ap("192.0.2.2:5353"), ap("203.0.113.53:53")),  // UDP: never a TCP connection's
		newFlowKey(ap("192.0.2.2:1"), ap("203.0.113.10:80")),     // no entry
	}
	got, err := natFromProc(strings.NewReader(procConntrack), conns)
	if err != nil {
		t.Fatal(err)
	}
	want := []natFlow{
		{key: newFlowKey(ap("192.0.2.2:40000"), ap("198.51.100.2:8080")), kind: NATDNAT},
		{key: newFlowKey(ap("[2001:db8:1::2]:40001"), ap("[2001:db8:2::2]:443")), kind: NATSNAT},
		{}, {}, {},
	}
	if !slices.Equal(got, want) {
		t.Errorf("natFromProc:\n got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{
		"ipv4 2 tcp 6 1 ESTABLISHED src=192.0.2.2 dst=203.0.113.10 sport=1 dport=80",                                                 // one direction
		"ipv4 2 tcp 6 1 ESTABLISHED src=192.0.2.2 dst=203.0.113.10 sport=1 dport=99999 src=1.2.3.4 dst=192.0.2.2 sport=80 dport=1",   // port
		"ipv4 2 tcp 6 1 ESTABLISHED src=192.0.2.2 dst=2001:db8::1 sport=1 dport=80 src=2001:db8::1 dst=192.0.2.2 sport=80 dport=1",   // families
		"ipv4 2 tcp x 1 ESTABLISHED src=192.0.2.2 dst=203.0.113.10 sport=1 dport=80 src=203.0.113.10 dst=192.0.2.2 sport=80 dport=1", // proto
	} {
		if e, ok := parseProcConntrackLine([]byte(bad)); ok {
			t.Errorf("%q parsed as %+v", bad, e)
		}
	}
}

func FuzzParseProcConntrackLine(f *testing.F) {
	for _, l := range strings.Split(procConntrack, "\n") {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, ok := parseProcConntrackLine(b); ok {
			checkTuples(t, e, b)
		}
	})
}

// checkTuples fails t unless both tuples of e, parsed from b, are valid and
// each of one family: whatever the parsers accept must be.
func checkTuples(t *testing.T, e ctEntry, b []byte) {
	t.Helper()
	for _, d := range []ctTuple{e.orig, e.reply} {
		if !d.src.IsValid() || !d.dst.IsValid() || d.src.Addr().Is4() != d.dst.Addr().Is4() {
			t.Fatalf("invalid tuple %+v from %x", d, b)
		}
	}
}

// TestProbeNATEntryRecreated: no conntrack entry when the round began (it
// was flushed), one after the probes (they made it): the silent target is
// probed again on the new reply tuple, and every probe is counted.
func TestProbeNATEntryRecreated(t *testing.T) {
	local, vip := ap("192.0.2.2:40000"), ap("203.0.113.10:80")
	backend := ap("198.51.100.2:8080")
	seqs := &fakeSeq{state: map[uint64]SeqState{1: st1, 2: st1}}
	p := newFakeProber(t, quickConfig(), seqs, nil)
	opened := 0
	p.open = func(string, []uint16) (rawConn, error) { // a fresh namespace view per round
		opened++
		return newFakeConn(natPeer(vip, backend, local, local)), nil
	}
	var mu sync.Mutex
	lookups := 0
	p.nat = func(_ string, conns []flowKey) ([]natFlow, error) {
		mu.Lock()
		defer mu.Unlock()
		lookups++
		out := make([]natFlow, len(conns))
		if lookups == 1 {
			return out, nil
		}
		for i, k := range conns {
			if k == newFlowKey(local, vip) {
				out[i], _ = natFromEntry(k, ctTuple{local, vip}, ctTuple{backend, local})
			}
		}
		return out, nil
	}
	ghost := target(2, "192.0.2.2:40001", "203.0.113.10:80") // no answer either way
	res := p.ProbeAll(context.Background(), []Target{target(1, local.String(), vip.String()), ghost})
	want := []Result{
		{Verdict: Alive, Mode: InWindow, Sent: 3, Replies: 1, Confirmed: true, NAT: NATDNAT},
		{Verdict: Silent, Mode: InWindow, Sent: 2, Confirmed: true},
	}
	res[0].RTT = 0
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if opened != 2 {
		t.Errorf("sockets opened %d times, want 2", opened)
	}
	if lookups != 2 {
		t.Errorf("%d lookups, want 2 (the round, then the silent ones)", lookups)
	}
	if sent := res[0].Sent + res[1].Sent; sent != 5 {
		t.Errorf("%d probes sent, want 5", sent)
	}
}
