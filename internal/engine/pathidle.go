package engine

import (
	"net/netip"
	"time"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/pathidle"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// This file feeds the path idle-timeout estimate (package pathidle) from the
// probes the engine records: an idle connection proved alive at some idle
// age says the path still held the flow; one confirmed dead says it was gone.

// listeners holds the listening sockets of a scan, by namespace, port and
// address (16-byte form; the wildcard is 0.0.0.0 or ::): a socket whose
// local end is one of them was accepted, so its path is keyed by its
// clients' network and our port, not by a client's ephemeral port.
type listeners map[listenKey]struct{}

type listenKey struct {
	netns uint64
	addr  [16]byte
	port  uint16
}

// add remembers sk if it is a listener.
func (l listeners) add(sk *inventory.Socket) {
	if sk.State == inventory.StateListen {
		l[listenKey{netns: sk.Netns, addr: sk.Local.Addr().As16(), port: sk.Local.Port()}] = struct{}{}
	}
}

// accepted reports whether sk's local (address, port), or (any address,
// port) of its family, is a listener of its namespace. An accepted socket
// whose listener is gone (closed since, or its namespace's dump failed)
// reads as outbound: its sample then lands in a destination of its own,
// as before, which costs that sample's use in an estimate, never a verdict
// (the path table decides nothing about a connection).
func (l listeners) accepted(sk *inventory.Socket) bool {
	if len(l) == 0 || sk.State == inventory.StateListen {
		return false
	}
	k := listenKey{netns: sk.Netns, addr: sk.Local.Addr().As16(), port: sk.Local.Port()}
	if _, ok := l[k]; ok {
		return true
	}
	k.addr = netip.IPv6Unspecified().As16()
	if sk.Family == inventory.FamilyInet {
		k.addr = netip.IPv4Unspecified().As16()
	}
	_, ok := l[k]
	return ok
}

// destOfLocked is sk's path destination: its clients' network and our port
// when it was accepted from a listener of the last scan, else the peer's
// network and port.
func (e *Engine) destOfLocked(sk *inventory.Socket) pathidle.Dest {
	if e.listening.accepted(sk) {
		return pathidle.ClientsOf(sk.Remote, sk.Local.Port())
	}
	return pathidle.DestOf(sk.Remote)
}

// pathIdle returns a socket's path idle age as of its last observation: how
// long nothing crossed the path, min(last data received, last data sent,
// last ACK received). An answered probe or keepalive refreshes the last ACK
// received, as it refreshes a middlebox's timer, so a connection probed
// alive before starts again from its answer.
func pathIdle(sk *inventory.Socket) (time.Duration, bool) {
	if !sk.Info.Valid() {
		return 0, false
	}
	ms := min(sk.Info.LastDataRecv, sk.Info.LastDataSent, sk.Info.LastAckRecv)
	return time.Duration(ms) * time.Millisecond, true
}

// recordPathLocked adds one probe result of the suspect ent (as before the
// result) to the path table. Only idle
// suspects count: a connection with data in flight says nothing about idle
// timeouts. Alive counts at the idle age of the observation before the probe
// (the probe went out no earlier, so the path held the flow at least that
// long); dead counts once per socket, when it first became a confirmed
// ghost, at its idle age now (the flow was gone by then at the latest).
// Both choices widen the window rather than narrow it.
func (e *Engine) recordPathLocked(ent *tracker.Entry, r probe.Result, wasGhost bool, now time.Time) {
	if !ent.Reasons.Has(tracker.ReasonIdle) {
		return
	}
	idle, ok := pathIdle(&ent.Socket)
	if !ok {
		return
	}
	s := pathidle.Sample{Dest: e.destOfLocked(&ent.Socket), Idle: idle, Comm: e.owner(ent.Socket.Inode).Comm}
	switch {
	case r.Verdict == probe.Alive:
		s.Outcome = pathidle.Alive
	case r.Verdict.Ghost() && r.Confirmed && !wasGhost:
		s.Outcome = pathidle.Dead
		s.Idle += max(now.Sub(ent.LastSeen), 0)
	default:
		return
	}
	if e.paths == nil {
		e.paths = pathidle.New(pathidle.Config{Now: e.opts.Now})
	}
	e.paths.Add(s)
}

// Paths returns each destination's path idle-timeout estimate, the best
// evidenced first (pathidle.Table.Estimates).
func (e *Engine) Paths() []pathidle.Estimate {
	e.mu.Lock()
	paths := e.paths
	e.mu.Unlock()
	if paths == nil {
		return nil
	}
	return paths.Estimates()
}
