package probe

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/probe/internal/wire"
)

// TestProbeCopiesSocketOptions: an in-window probe is built like the
// socket's own segment (timestamp option on the socket's clock, TSecr =
// ts_recent, TOS / traffic class, flow label) and routed with its mark and
// bound interface; a blind probe carries none of it.
func TestProbeCopiesSocketOptions(t *testing.T) {
	st := st1
	st.TSOK, st.TSRecent, st.TSOffset = true, 0xabcdef01, 0xfffffff0
	st.Mark, st.BoundIf, st.TOS, st.TClass, st.FlowLabel = 0x64, 3, 0xb8, 0x28, 0x12345
	usec := st
	usec.USecTS = true
	plain := st1
	for _, tc := range []struct {
		name      string
		st        SeqState
		local     string
		remote    string
		mono      time.Duration
		wantTS    *wire.Timestamp
		wantTOS   uint8
		wantLabel uint32
		wantRoute route
	}{{
		name: "ipv4 ms clock", st: st, local: "192.0.2.1:80", remote: "198.51.100.2:4000", mono: 90*time.Second + 999*time.Microsecond,
		wantTS: &wire.Timestamp{Val: 90_000 - 16 /* + 0xfffffff0, wrapped */, Ecr: 0xabcdef01}, wantTOS: 0xb8,
		wantRoute: route{mark: 0x64, ifindex: 3, tos: 0xb8},
	}, {
		name: "ipv6 usec clock", st: usec, local: "[2001:db8::1]:80", remote: "[2001:db8::2]:4000", mono: 90*time.Second + 999*time.Microsecond,
		wantTS: &wire.Timestamp{Val: 90_000_999 - 16, Ecr: 0xabcdef01}, wantTOS: 0x28, wantLabel: 0x12345,
		wantRoute: route{mark: 0x64, ifindex: 3, tos: 0x28},
	}, {
		name: "v4-mapped goes over IPv4 with the IPv4 TOS", st: st, local: "[::ffff:192.0.2.1]:80", remote: "[::ffff:198.51.100.2]:4000",
		mono: time.Second, wantTS: &wire.Timestamp{Val: 1000 - 16, Ecr: 0xabcdef01}, wantTOS: 0xb8,
		wantRoute: route{mark: 0x64, ifindex: 3, tos: 0xb8},
	}, {
		name: "no timestamps negotiated", st: plain, local: "[2001:db8::1]:80", remote: "[2001:db8::2]:4000", mono: time.Second,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			conn := newFakeConn(ackPeer)
			p := newFakeProber(t, quickConfig(), &fakeSeq{state: map[uint64]SeqState{1: tc.st}}, conn)
			p.mono = func() (time.Duration, error) { return tc.mono, nil }
			res, err := p.Probe(context.Background(), target(1, tc.local, tc.remote))
			if err != nil || res.Verdict != Alive {
				t.Fatalf("%+v %v", res, err)
			}
			conn.mu.Lock()
			pkt, rt := conn.pkts[0], conn.routes[0]
			conn.mu.Unlock()
			ipLen, tos, label := wire.IPv6Size, wire.IPv6Header(pkt).TrafficClass(), wire.IPv6Header(pkt).FlowLabel()
			if pkt[0]>>4 == 4 {
				ipLen, tos, label = wire.IPv4MinSize, wire.IPv4Header(pkt).TOS(), 0
			}
			ts, ok := wire.TCPHeader(pkt[ipLen:]).Timestamp()
			var gotTS *wire.Timestamp
			if ok {
				gotTS = &ts
			}
			if diff := cmp.Diff(tc.wantTS, gotTS); diff != "" {
				t.Errorf("timestamp option (-want +got):\n%s", diff)
			}
			if tos != tc.wantTOS || label != tc.wantLabel {
				t.Errorf("header TOS %#x label %#x, want %#x %#x", tos, label, tc.wantTOS, tc.wantLabel)
			}
			if rt != tc.wantRoute {
				t.Errorf("route %+v, want %+v", rt, tc.wantRoute)
			}
			src, dst := netip.MustParseAddrPort(tc.local).Addr().Unmap(), netip.MustParseAddrPort(tc.remote).Addr().Unmap()
			if wire.Checksum(pkt[ipLen:], wire.PseudoHeaderSum(wire.ProtoTCP, src, dst, len(pkt)-ipLen)) != 0 {
				t.Error("TCP checksum does not verify")
			}
		})
	}

	// Blind probes know nothing of the socket.
	conn := newFakeConn(ackPeer)
	p := newFakeProber(t, quickConfig(), nil, conn)
	if _, err := p.Probe(context.Background(), target(1, "192.0.2.1:80", "198.51.100.2:4000")); err != nil {
		t.Fatal(err)
	}
	if _, ok := wire.TCPHeader(conn.pkts[0][wire.IPv4MinSize:]).Timestamp(); ok || conn.routes[0] != (route{}) || wire.IPv4Header(conn.pkts[0]).TOS() != 0 {
		t.Errorf("blind probe carries socket options: route %+v", conn.routes[0])
	}
}

// TestProbeRefusesSignedSockets: a TCP-MD5 or TCP-AO socket is never probed
// (its peer drops unsigned segments, so silence would be a false ghost): the
// result is unprobed, unconfirmed, with the reason and no error.
func TestProbeRefusesSignedSockets(t *testing.T) {
	md5, ao := st1, st1
	md5.MD5, ao.AO = true, true
	conn := newFakeConn(nil) // a silent peer: probing would say silent
	p := newFakeProber(t, quickConfig(), &fakeSeq{state: map[uint64]SeqState{1: md5, 2: ao, 3: st1}}, conn)
	res := p.ProbeAll(context.Background(), []Target{
		target(1, "192.0.2.1:179", "198.51.100.2:4000"),
		target(2, "192.0.2.1:179", "198.51.100.2:4001"),
		target(3, "192.0.2.1:179", "198.51.100.2:4002"),
	})
	want := []Result{
		{Verdict: Unprobed, Mode: InWindow, Unprobeable: UnprobeableTCPMD5},
		{Verdict: Unprobed, Mode: InWindow, Unprobeable: UnprobeableTCPAO},
		{Verdict: Silent, Mode: InWindow, Sent: 2, Confirmed: true},
	}
	if diff := cmp.Diff(want, res, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	for _, r := range conn.probes() {
		if r.Dst.Port() != 4002 {
			t.Errorf("a probe went to a signed socket's peer: %+v", r)
		}
	}
}
