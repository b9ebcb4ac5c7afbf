package engine

import (
	"encoding/binary"
	"time"

	"github.com/ghostd/ghostd/internal/epoch"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// verdictState is what the engine remembers of a socket's last probe, kept
// packed in the socket's tracker Tag (see packVerdict).
type verdictState struct {
	at         epoch.Stamp // when the probe finished
	ghostSince epoch.Stamp // epoch.Zero unless a confirmed ghost
	rtt        time.Duration
	verdict    uint8 // index in packedVerdicts
	mode       uint8 // index in packedModes
	sent       uint8
	replies    uint8
	host       int8 // host hint: -1 not asked, 0 unreachable, 1 reachable, 2 nat, 3 shared (hosthint.go)
	closed     bool // the peer's RST closed the local socket
	guarded    bool // the probe acknowledged RCV.NXT behind the reset guard
	confirmed  bool
	why        uint8 // index in packedUnprobeable: why the socket cannot be probed
	// nat is the index in packedNATs of the connection's translation.
	nat uint8
	// uncertain is the index in packedUncertain: why a silence (or an
	// unreachable) was not confirmed.
	uncertain uint8
}

var (
	packedVerdicts = probe.Verdicts // Unprobed first: a zero index is no verdict
	packedModes    = []probe.Mode{"", probe.InWindow, probe.Blind}
	// packedUnprobeable lists Result.Unprobeable's values; "" first.
	packedUnprobeable = []string{"", probe.UnprobeableTCPMD5, probe.UnprobeableTCPAO}
	packedUncertain   = []string{"", probe.UncertainInterference, probe.UncertainCaptureLost, probe.UncertainBlind, probe.UncertainNATUnknown, probe.UncertainRouting}
	packedNATs        = []string{"", probe.NATDNAT, probe.NATSNAT, probe.NATRedirect,
		probe.NATDNAT + "+" + probe.NATSNAT, probe.NATRedirect + "+" + probe.NATSNAT}
)

func packIndex[T comparable](list []T, v T) uint8 {
	for i, x := range list {
		if x == v {
			return uint8(i)
		}
	}
	return 0
}

func clampUint8(n int) uint8 { return uint8(min(max(n, 0), 255)) }

func packResult(r probe.Result, at, ghostSince epoch.Stamp) verdictState {
	v := verdictState{
		at: at, ghostSince: ghostSince, rtt: r.RTT,
		verdict: packIndex(packedVerdicts, r.Verdict), mode: packIndex(packedModes, r.Mode),
		sent: clampUint8(r.Sent), replies: clampUint8(r.Replies),
		host: packHost(r), closed: r.ClosedLocal, guarded: r.Guarded, confirmed: r.Confirmed,
		why: packIndex(packedUnprobeable, r.Unprobeable),
		nat: packIndex(packedNATs, r.NAT), uncertain: packIndex(packedUncertain, r.Uncertain),
	}
	return v
}

func (v *verdictState) result() probe.Result {
	r := probe.Result{
		Verdict: packedVerdicts[v.verdict], Mode: packedModes[v.mode], Sent: int(v.sent), Replies: int(v.replies),
		RTT: v.rtt, ClosedLocal: v.closed, Guarded: v.guarded, Confirmed: v.confirmed, Unprobeable: packedUnprobeable[v.why],
		NAT: packedNATs[v.nat], Uncertain: packedUncertain[v.uncertain],
	}
	unpackHost(v.host, &r)
	return r
}

// The tracker keeps each suspect's verdict in its entry's Tag, so a pass
// over every suspect reads it without a lookup, and it goes with the entry:
// bytes 0-23 at, ghostSince and rtt (little-endian), then verdict, mode,
// sent, replies, host, closed (bit 0; guarded bit 1; the NAT kind in bits 2-7), confirmed,
// and 1 in the last byte once probed. The mode byte's high nibble says why
// a socket could not be probed.
func packVerdict(v *verdictState) tracker.Tag {
	var t tracker.Tag
	binary.LittleEndian.PutUint64(t[0:], uint64(v.at))
	binary.LittleEndian.PutUint64(t[8:], uint64(v.ghostSince))
	binary.LittleEndian.PutUint64(t[16:], uint64(v.rtt))
	t[24], t[25], t[26], t[27], t[28] = v.verdict, v.mode|v.why<<4, v.sent, v.replies, byte(v.host)
	if v.closed {
		t[29] = 1
	}
	if v.guarded {
		t[29] |= 2
	}
	t[29] |= v.nat << 2
	if v.confirmed {
		t[30] = 1
	}
	t[30] |= v.uncertain << 1
	t[31] = 1
	return t
}

// unpackVerdict reverses packVerdict; ok is false for a socket never probed
// (or whose verdict the tracker cleared).
func unpackVerdict(t tracker.Tag) (v verdictState, ok bool) {
	mode, why := t[25]&0xf, t[25]>>4
	if t[31] != 1 || int(t[24]) >= len(packedVerdicts) || int(mode) >= len(packedModes) || int(why) >= len(packedUnprobeable) || int(t[29]>>2) >= len(packedNATs) || int(t[30]>>1) >= len(packedUncertain) {
		return verdictState{}, false
	}
	return verdictState{
		at:         epoch.Stamp(binary.LittleEndian.Uint64(t[0:])),
		ghostSince: epoch.Stamp(binary.LittleEndian.Uint64(t[8:])),
		rtt:        time.Duration(binary.LittleEndian.Uint64(t[16:])),
		verdict:    t[24], mode: mode, sent: t[26], replies: t[27], host: int8(t[28]),
		closed: t[29]&1 == 1, guarded: t[29]&2 == 2, nat: t[29] >> 2, confirmed: t[30]&1 == 1, why: why, uncertain: t[30] >> 1,
	}, true
}

// verdict returns a suspect's last probe verdict, if it has one.
func (e *Engine) verdict(k inventory.Key) (verdictState, bool) {
	tag, ok := e.tracker.Tag(k)
	if !ok {
		return verdictState{}, false
	}
	return unpackVerdict(tag)
}

// ghost reports whether a probed socket with these reasons is a confirmed
// ghost, and for how long. lastAck is when the socket last took an ACK
// (zero: unknown): a socket that took one after it was first confirmed has a
// live peer that answered a probe late, after the prober stopped waiting,
// and is no ghost (the kill gate refuses it too).
func (e *Engine) ghost(rs tracker.Reasons, v *verdictState, lastAck, now time.Time) (bool, float64) {
	if !packedVerdicts[v.verdict].Ghost() || !v.confirmed || !rs.CanGhost() {
		return false, 0
	}
	if v.ghostSince == epoch.Zero {
		return true, 0
	}
	since := e.epoch.Time(v.ghostSince)
	if lastAck.After(since) {
		return false, 0
	}
	return true, now.Sub(since).Seconds()
}
