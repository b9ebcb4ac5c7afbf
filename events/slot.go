package events

import "time"

// This file is how the ring holds an event: a slot. A full ring of the
// daemon's 10 000 events is a fixed part of its resident size, so the
// fields that only ever take a few values (the kind, family, state,
// verdict, NAT and the like, and the reasons) are kept as one-byte codes
// into the ring's table of those values instead of string headers and a
// slice, and the RTT without its pointer. An event whose values do not fit
// the codes is kept whole.

// maxReasonCodes is how many reasons a slot holds as codes.
const maxReasonCodes = 4

// slot is one event in the ring.
type slot struct {
	seq                                   uint64
	time                                  time.Time
	netnsInode, cookie                    uint64
	pid, attempts, replies                int
	idle, rtt                             float64
	netns, local, remote, comm, unit, pod string
	container, detail                     string
	inode                                 uint32
	// kind, family, state, verdict, uncertain, nat, result, mode.
	codes    [8]uint8
	reasons  [maxReasonCodes]uint8
	nReasons uint8
	// withReasons is set when Reasons was not nil (an empty list stays one).
	withReasons bool
	hasRTT      bool
	// whole is the event when it did not fit the codes (nil otherwise).
	whole *Event
}

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
		pid: ev.PID, attempts: ev.Attempts, replies: ev.Replies, idle: ev.IdleSeconds,
		netns: ev.Netns, local: ev.Local, remote: ev.Remote, comm: ev.Comm, unit: ev.Unit, pod: ev.Pod,
		container: ev.Container, detail: ev.Detail, inode: ev.Inode,
	}
	if ev.RTTSeconds != nil {
		s.rtt, s.hasRTT = *ev.RTTSeconds, true
	}
	ok := len(ev.Reasons) <= maxReasonCodes
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

// event returns the event s holds; its reasons only with reasons set (a
// query matches events without them). It shares nothing with the ring.
func (s *slot) event(c *codeTable, reasons bool) Event {
	if s.whole != nil {
		return cloneEvent(s.whole)
	}
	v := c.vals
	ev := Event{
		Seq: s.seq, Time: s.time, Kind: Kind(v[s.codes[0]]),
		Netns: s.netns, NetnsInode: s.netnsInode, Family: v[s.codes[1]], Local: s.local, Remote: s.remote,
		State: v[s.codes[2]], Cookie: s.cookie, Inode: s.inode,
		PID: s.pid, Comm: s.comm, Unit: s.unit, Pod: s.pod, Container: s.container,
		Verdict: v[s.codes[3]], Attempts: s.attempts, Replies: s.replies, IdleSeconds: s.idle,
		Uncertain: v[s.codes[4]], NAT: v[s.codes[5]], Result: v[s.codes[6]], Detail: s.detail, Mode: v[s.codes[7]],
	}
	if s.hasRTT {
		rtt := s.rtt
		ev.RTTSeconds = &rtt
	}
	if reasons && s.withReasons {
		ev.Reasons = make([]string, s.nReasons)
		for i := range ev.Reasons {
			ev.Reasons[i] = v[s.reasons[i]]
		}
	}
	return ev
}
