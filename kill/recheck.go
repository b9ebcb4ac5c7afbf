package kill

import (
	"fmt"
	"time"

	"github.com/ghostd/ghostd/inventory"
)

// This file re-checks a candidate against the kernel right before the kill:
// the socket must be the same one, in the same state, and show nothing a
// live peer or a busy owner would leave behind.

// recheck looks the candidate's socket up again and returns why it is
// skipped, or "" with *cur set to the socket as it is now. It runs before
// the re-probe and again after it, right before the kill: the re-probe
// takes seconds, and what the socket did meanwhile counts too.
func (k *Killer) recheck(c *Candidate, cur *inventory.Socket, now time.Time) string {
	s, found, err := k.ops.Lookup(&c.Socket)
	switch {
	case err != nil:
		return "re-check failed: " + err.Error()
	case !found:
		return "gone"
	case s.Cookie != c.Socket.Cookie || s.Netns != c.Socket.Netns:
		return "cookie changed"
	case s.State != c.Socket.State:
		return fmt.Sprintf("state changed to %s", s.State)
	case progressed(&c.Socket, &s):
		return "now healthy: bytes moved since the scan"
	}
	if c.closeWait() {
		if why := closeWaitBusy(c, &s, now); why != "" {
			return why
		}
	} else if why := ackedSinceGhost(c, &s, now); why != "" {
		return why
	}
	*cur = s
	return ""
}

// ackedSinceGhost returns why a ghost must not be killed because its socket
// took an ACK after it was first confirmed a ghost, or "". A dead peer sends
// nothing, while a slow one answers a probe after the prober stopped
// waiting: the probe came out silent, but the late answer still reaches the
// socket, whose kernel takes the duplicate ACK and refreshes
// tcpi_last_ack_recv (docs/design.md, "Probes"). Without tcp_info this cannot
// be told, and the kill is refused.
func ackedSinceGhost(c *Candidate, s *inventory.Socket, now time.Time) string {
	if !s.Info.Valid() {
		return "activity unknown (no tcp_info)"
	}
	ack := now.Add(-time.Duration(s.Info.LastAckRecv) * time.Millisecond)
	if ack.After(c.GhostSince) {
		return fmt.Sprintf("an ACK arrived %s ago, after it was confirmed a ghost %s ago: the peer answers late",
			now.Sub(ack).Round(time.Second), now.Sub(c.GhostSince).Round(time.Second))
	}
	return ""
}

// closeWaitBusy returns why a CLOSE_WAIT socket must not be shut down yet,
// or "". A client that half-closes (nc -N, rsync, HTTP/1.0 and some RPC
// clients) leaves the server in CLOSE_WAIT while it still computes and
// writes its answer: only a socket whose owner has sent nothing since the
// peer's FIN and has nothing queued or in flight is a leak.
func closeWaitBusy(c *Candidate, s *inventory.Socket, now time.Time) string {
	switch {
	case !s.Info.Valid():
		return "CLOSE_WAIT activity unknown (no tcp_info)"
	case s.WQueue > 0 || s.Info.Unacked > 0:
		return "CLOSE_WAIT socket still sending"
	case c.GhostSince.IsZero():
		return "CLOSE_WAIT age unknown"
	}
	quiet := time.Duration(s.Info.LastDataSent) * time.Millisecond
	if in := now.Sub(c.GhostSince); quiet < in {
		return fmt.Sprintf("CLOSE_WAIT socket sent data %s ago, after the peer closed %s ago", quiet.Round(time.Second), in.Round(time.Second))
	}
	return ""
}

// progressed reports whether the connection moved data between the scan and
// the re-check: then it is not dead, whatever the probe said.
func progressed(old, cur *inventory.Socket) bool {
	if a, ok := old.Info.BytesReceived(); ok {
		if b, ok := cur.Info.BytesReceived(); ok && b != a {
			return true
		}
	}
	if a, ok := old.Info.BytesAcked(); ok {
		if b, ok := cur.Info.BytesAcked(); ok && b != a {
			return true
		}
	}
	return false
}
