package events

import (
	"math"
	"net/netip"
	"time"

	"github.com/ghostd/ghostd/internal/addrpack"
)

// This file is how the ring holds an event: a slot. A full ring of the
// daemon's 10 000 events is a fixed part of its resident size, so the
// fields that only ever take a few values (the kind, family, state,
// verdict, NAT and the like, and the reasons) are kept as one-byte codes
// into the ring's table of those values instead of string headers and a
// slice, the RTT without its pointer, the two addresses as 16 bytes and a
// port each (not as two strings of their own: 80 bytes an event), and the
// small counts as 32 bits. An event whose values do not fit is kept whole.

// maxReasonCodes is how many reasons a slot holds as codes.
const maxReasonCodes = 4

// slot is one event in the ring.
type slot struct {
	seq                    uint64
	time                   time.Time
	netnsInode, cookie     uint64
	idle, rtt              float64
	netns, comm, unit, pod string
	container, detail      string
	local, remote          [16]byte // addrpack.Pack
	pid, attempts, replies int32
	inode                  uint32
	localPort, remotePort  uint16
	addrKinds              uint8 // addrpack.Pair
	// kind, family, state, verdict, uncertain, nat, result, mode.
	codes    [8]uint8
	reasons  [maxReasonCodes]uint8
	nReasons uint8
	// withReasons is set when Reasons was not nil (an empty list stays one).
	withReasons bool
	hasRTT      bool
	// whole is the event when it did not fit (nil otherwise).
	whole *Event
}

// packAddr returns the packed form of an address and port as
// netip.AddrPort formats it; ok is false for any other text (no address,
// a zone), which packing would not give back.
func packAddr(s string) (b [16]byte, port uint16, kind uint8, ok bool) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return b, 0, 0, false
	}
	b, kind = addrpack.Pack(ap.Addr())
	var buf [64]byte
	back := netip.AddrPortFrom(addrpack.Unpack(b, kind), ap.Port()).AppendTo(buf[:0])
	return b, ap.Port(), kind, string(back) == s
}

// unpackAddr is the inverse of packAddr.
func unpackAddr(b [16]byte, port uint16, kind uint8) string {
	return netip.AddrPortFrom(addrpack.Unpack(b, kind), port).String()
}

// fits32 says whether v is kept exactly as an int32.
func fits32(v int) bool { return v >= math.MinInt32 && v <= math.MaxInt32 }

// codeTable numbers the values of the coded fields; code 0 is "". It holds
// at most 256 values; a value after that does not fit.
type codeTable struct {
	vals []string
	idx  map[string]uint8
}

func (c *codeTable) code(s string) (uint8, bool) {
	if s == "" {
		return 0, true
	}
	if i, ok := c.idx[s]; ok {
		return i, true
	}
	if c.vals == nil {
		c.vals, c.idx = []string{""}, map[string]uint8{}
	}
	if len(c.vals) > 255 {
		return 0, false
	}
	c.vals = append(c.vals, s)
	c.idx[s] = uint8(len(c.vals) - 1)
	return uint8(len(c.vals) - 1), true
}

// put stores ev in s, coding what it can.
func (s *slot) put(ev *Event, c *codeTable) {
	*s = slot{
		seq: ev.Seq, time: ev.Time, netnsInode: ev.NetnsInode, cookie: ev.Cookie,
		pid: int32(ev.PID), attempts: int32(ev.Attempts), replies: int32(ev.Replies), idle: ev.IdleSeconds,
		netns: ev.Netns, comm: ev.Comm, unit: ev.Unit, pod: ev.Pod,
		container: ev.Container, detail: ev.Detail, inode: ev.Inode,
	}
	if ev.RTTSeconds != nil {
		s.rtt, s.hasRTT = *ev.RTTSeconds, true
	}
	var lk, rk uint8
	var okL, okR bool
	s.local, s.localPort, lk, okL = packAddr(ev.Local)
	s.remote, s.remotePort, rk, okR = packAddr(ev.Remote)
	s.addrKinds = addrpack.Pair(lk, rk)
	ok := okL && okR && fits32(ev.PID) && fits32(ev.Attempts) && fits32(ev.Replies) && len(ev.Reasons) <= maxReasonCodes
	for i, v := range [...]string{string(ev.Kind), ev.Family, ev.State, ev.Verdict, ev.Uncertain, ev.NAT, ev.Result, ev.Mode} {
		var fits bool
		s.codes[i], fits = c.code(v)
		ok = ok && fits
	}
	for i := 0; ok && i < len(ev.Reasons); i++ {
		s.reasons[i], ok = c.code(ev.Reasons[i])
	}
	s.nReasons, s.withReasons = uint8(len(ev.Reasons)), ev.Reasons != nil
	if !ok {
		whole := cloneEvent(ev)
		s.whole = &whole
	}
}

// event returns the event s holds; its reasons and addresses only with
// full set (a query matches events without them). It shares nothing with
// the ring.
func (s *slot) event(c *codeTable, full bool) Event {
	if s.whole != nil {
		return cloneEvent(s.whole)
	}
	v := c.vals
	ev := Event{
		Seq: s.seq, Time: s.time, Kind: Kind(v[s.codes[0]]),
		Netns: s.netns, NetnsInode: s.netnsInode, Family: v[s.codes[1]],
		State: v[s.codes[2]], Cookie: s.cookie, Inode: s.inode,
		PID: int(s.pid), Comm: s.comm, Unit: s.unit, Pod: s.pod, Container: s.container,
		Verdict: v[s.codes[3]], Attempts: int(s.attempts), Replies: int(s.replies), IdleSeconds: s.idle,
		Uncertain: v[s.codes[4]], NAT: v[s.codes[5]], Result: v[s.codes[6]], Detail: s.detail, Mode: v[s.codes[7]],
	}
	if s.hasRTT {
		rtt := s.rtt
		ev.RTTSeconds = &rtt
	}
	if !full {
		return ev
	}
	ev.Local = unpackAddr(s.local, s.localPort, addrpack.Local(s.addrKinds))
	ev.Remote = unpackAddr(s.remote, s.remotePort, addrpack.Remote(s.addrKinds))
	if s.withReasons {
		ev.Reasons = make([]string, s.nReasons)
		for i := range ev.Reasons {
			ev.Reasons[i] = v[s.reasons[i]]
		}
	}
	return ev
}
