package tracker

import (
	"time"

	"github.com/ghostd/ghostd/inventory"
)

// classification is classify's verdict on one observation.
type classification struct {
	reasons, unavailable Reasons
	keep                 bool // the socket needs an entry (a reason, or history for the next scan)
	progress             bool // bytes_acked or bytes_received grew since the previous observation
	stateSince           time.Time
	timerSince           time.Time
	idle                 time.Duration
	idleKnown            bool
	bytesAcked           uint64
	bytesRecv            uint64
	hasAcked, hasRecv    bool
}

// history is what classify needs from the previous observation of a socket.
type history struct {
	state                            inventory.State
	timerKind                        inventory.Timer // timerKind of the socket
	lastSeen, stateSince, timerSince time.Time       // Entry's
	bytesAcked, bytesRecv            uint64
	hasAcked, hasRecv                bool
	reasons                          Reasons
}

// KeepaliveUnanswered is how many keepalive probes in a row must go
// unanswered for keepalive_failing. One is not enough: a dump often catches a
// probe whose ACK is still on its way (measured: 2 079 of 40 000 healthy
// loopback sockets whose keepalive timers fired together), and a peer answers
// at most one out-of-window segment per 500 ms, so a ghostd probe just before
// the kernel's own can leave that one unanswered.
const KeepaliveUnanswered = 2

func ms(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }

// retransmits returns how many retransmission timeouts in a row went
// unanswered: idiag_retrans (icsk_retransmits) and, with tcp_info,
// tcpi_retransmits. The kernel zeroes them when new data is acknowledged.
// tcpi_backoff is not used: the kernel also backs off, without counting
// retransmits, while it probes a receiver that shrank its window to zero.
func retransmits(s *inventory.Socket) uint8 {
	n := s.Retrans
	if s.Info.Valid() {
		n = max(n, s.Info.Retransmits)
	}
	return n
}

// zeroWindow reports whether the socket is probing a zero window: the persist
// timer, or the retransmit timer while the peer advertises a zero window
// (tcpi_snd_wnd, 5.4+): measured on 6.18, a receiver whose small buffer filled
// with data in flight gets probed that way (timer 1, backoff growing,
// retransmits 0, snd_wnd 0).
func zeroWindow(s *inventory.Socket) bool { return probingZeroWindow(s.Timer, &s.Info) }

func probingZeroWindow(timer inventory.Timer, info *inventory.TCPInfo) bool {
	switch timer {
	case inventory.TimerZeroWindow:
		return true
	case inventory.TimerRetransmit:
		if !info.Valid() {
			return false
		}
		w, ok := info.SndWnd()
		return ok && w == 0
	}
	return false
}

// timerKind is the timer as the tracker ages it: both ways of probing a zero
// window count as the persist timer.
func timerKind(s *inventory.Socket) inventory.Timer { return timerKindOf(s.Timer, &s.Info) }

func timerKindOf(timer inventory.Timer, info *inventory.TCPInfo) inventory.Timer {
	if probingZeroWindow(timer, info) {
		return inventory.TimerZeroWindow
	}
	return timer
}

// idleOf returns Entry.Idle and Entry.IdleKnown for a tcp_info.
func idleOf(info *inventory.TCPInfo) (time.Duration, bool) {
	if !info.Valid() {
		return 0, false
	}
	return min(ms(info.LastDataRecv), ms(info.LastDataSent)), true
}

// classify turns one observation of s, plus prev (nil on first sight, or when
// the tracker remembered nothing), into reasons. Rules:
//
//   - idle: ESTABLISHED, no timer but possibly a delayed ACK (no retransmit
//     or persist timer), or a keepalive timer whose kernel would not find a
//     dead peer within cfg.Horizon (see kernelSettings.leftToKernel; with
//     the settings guessed, an idle suspect stays one), and no data
//     received AND none sent for at least cfg.Idle (tcpi_last_data_recv, tcpi_last_data_sent). ACKs are
//     ignored on purpose: a probe's reply refreshes tcpi_last_ack_recv, and a
//     connection that sends data and gets it acknowledged has a recent
//     last_data_sent with nothing unacknowledged (else its retransmit timer
//     runs), so an upload-only connection with ACK progress is not idle.
//     Needs tcp_info: without it idle is Unavailable.
//   - retransmitting: ESTABLISHED or CLOSE_WAIT, the kernel's own probing
//     unanswered cfg.RetransBackoff times in a row (retransmits under the
//     retransmit timer, or idiag_retrans = unanswered window probes under the
//     persist timer), and no bytes_acked progress since the previous
//     observation (when both have bytes_acked; else the count alone, which
//     the kernel resets on every ACK of new data).
//   - keepalive_failing: ESTABLISHED or CLOSE_WAIT, keepalive timer with
//     idiag_retrans (unanswered probes) ≥ KeepaliveUnanswered.
//   - zero_window: ESTABLISHED or CLOSE_WAIT, probing a zero window (see
//     zeroWindow) continuously for at least cfg.Stall (TimerSince; on first
//     sight at least tcpi_last_data_sent less one RTO, see zeroWindowSince)
//     while the peer answers the probes (else it is retransmitting: a dead
//     peer behind a zero window is not "stalled").
//   - close_wait, fin_wait2, last_ack: the state held for at least its
//     threshold (StateSince).
func classify(cfg *Config, now time.Time, s *inventory.Socket, prev *history, sys *inventory.TCPSysctls, own *KeepaliveSettings) classification {
	var c classification
	info := &s.Info
	valid := info.Valid()
	if valid {
		c.bytesAcked, c.hasAcked = info.BytesAcked()
		c.bytesRecv, c.hasRecv = info.BytesReceived()
	}
	c.idle, c.idleKnown = idleOf(info)
	ackProgressKnown, ackProgress := false, false
	if prev != nil {
		if prev.hasAcked && c.hasAcked {
			ackProgressKnown, ackProgress = true, c.bytesAcked > prev.bytesAcked
		}
		c.progress = ackProgress || (prev.hasRecv && c.hasRecv && c.bytesRecv > prev.bytesRecv)
	}

	c.stateSince = now
	if prev != nil && prev.state == s.State {
		c.stateSince = prev.stateSince
	} else if valid && (s.State == inventory.StateCloseWait || s.State == inventory.StateFinWait2) {
		lb := now.Add(-ms(info.LastAckRecv))
		if prev != nil && lb.Before(prev.lastSeen) {
			lb = prev.lastSeen // it changed state after we last saw it
		}
		c.stateSince = lb
	}
	c.timerSince = now
	if prev != nil && prev.timerKind == timerKind(s) {
		c.timerSince = prev.timerSince
	} else if valid && timerKind(s) == inventory.TimerZeroWindow {
		lb := zeroWindowSince(now, info)
		if prev != nil && lb.Before(prev.lastSeen) {
			lb = prev.lastSeen // it began after we last saw it
		}
		c.timerSince = lb
	}

	switch s.State {
	case inventory.StateEstablished, inventory.StateCloseWait:
		switch timerKind(s) {
		case inventory.TimerZeroWindow:
			c.keep = true
			unanswered := retransmits(s)
			if s.Timer == inventory.TimerZeroWindow {
				unanswered = s.Retrans // icsk_probes_out
			}
			if unanswered >= cfg.RetransBackoff && !(ackProgressKnown && ackProgress) {
				c.reasons = c.reasons.With(ReasonRetransmitting)
			} else if now.Sub(c.timerSince) >= cfg.Stall {
				c.reasons = c.reasons.With(ReasonZeroWindow)
			}
		case inventory.TimerRetransmit:
			n := retransmits(s)
			if n >= cfg.RetransBackoff && !(ackProgressKnown && ackProgress) {
				c.reasons = c.reasons.With(ReasonRetransmitting)
			}
			// Remember a socket that has begun retransmitting, to see its
			// bytes_acked progress at the next scan.
			c.keep = c.keep || n > 0
		case inventory.TimerKeepalive:
			if s.Retrans >= KeepaliveUnanswered {
				c.reasons = c.reasons.With(ReasonKeepaliveFailing)
			} else if s.State == inventory.StateEstablished && valid && c.idle >= cfg.Idle {
				// Keepalive is on; it counts only if it is fast enough. A
				// guess (own settings unknown) rises and falls with the
				// timer's phase, so once idle it stays idle while nothing
				// moves: errors go toward "suspect".
				sticky := own == nil && prev != nil && prev.reasons.Has(ReasonIdle)
				if k := settingsFor(sys, own, s); sticky || !k.leftToKernel(cfg) {
					c.reasons = c.reasons.With(ReasonIdle)
				}
			}
		case inventory.TimerNone, inventory.TimerDelayedAck:
			if s.State != inventory.StateEstablished {
				break
			}
			if !valid {
				c.unavailable = c.unavailable.With(ReasonIdle)
			} else if c.idle >= cfg.Idle {
				c.reasons = c.reasons.With(ReasonIdle)
			}
		}
		if s.State == inventory.StateCloseWait {
			c.keep = true
			if now.Sub(c.stateSince) >= cfg.CloseWait {
				c.reasons = c.reasons.With(ReasonCloseWait)
			}
		}
	case inventory.StateFinWait2:
		c.keep = true
		if now.Sub(c.stateSince) >= cfg.FinWait2 {
			c.reasons = c.reasons.With(ReasonFinWait2)
		}
	case inventory.StateLastAck:
		c.keep = true
		if now.Sub(c.stateSince) >= cfg.LastAck {
			c.reasons = c.reasons.With(ReasonLastAck)
		}
	}
	c.keep = c.keep || !c.reasons.Empty()
	return c
}

// zeroWindowSince bounds when a socket began probing a zero window, seen
// for the first time: no later than now, and no earlier than the last data
// it sent less one RTO. A receiver's window closes only as data arrives
// (Linux never shrinks it), so the window shut in the ACK of the last data
// sent, about a round trip after it; and while the window stays shut, no
// new data goes out (a window probe carries none).
func zeroWindowSince(now time.Time, info *inventory.TCPInfo) time.Time {
	age := ms(info.LastDataSent) - time.Duration(info.RTO)*time.Microsecond
	if age <= 0 {
		return now
	}
	return now.Add(-age)
}

// healthy is classify's fast path for the common case: an ESTABLISHED socket
// with tcp_info that exchanged data recently and is not in a retransmission
// timeout nor short of keepalive answers, so it has no reason and needs no
// history.
func healthy(cfg *Config, s *inventory.Socket) bool {
	if s.State != inventory.StateEstablished || !s.Info.Valid() {
		return false
	}
	switch s.Timer {
	case inventory.TimerNone, inventory.TimerDelayedAck:
		return min(ms(s.Info.LastDataRecv), ms(s.Info.LastDataSent)) < cfg.Idle
	case inventory.TimerKeepalive:
		return s.Retrans < KeepaliveUnanswered && min(ms(s.Info.LastDataRecv), ms(s.Info.LastDataSent)) < cfg.Idle
	case inventory.TimerRetransmit:
		return retransmits(s) == 0 && !zeroWindow(s)
	}
	return false
}
