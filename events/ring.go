package events

import (
	"slices"
	"sync"
	"time"
)

// Ring keeps the last events in memory, numbered so that a client can page
// through them with Query's since. It is safe for concurrent use; Add costs
// one copy under a mutex and never blocks on anything else.
type Ring struct {
	now func() time.Time

	mu      sync.Mutex
	buf     []slot    // circular; len(buf) is the capacity
	codes   codeTable // what the slots' codes stand for (slot.go)
	start   int       // index of the oldest event
	n       int       // events held
	seq     uint64    // the last Seq given
	evicted uint64    // events pushed out by newer ones
	kinds   [len(kindNames)]uint64
}

// kindNames sizes the per-kind counters; it mirrors Kinds.
var kindNames = [...]Kind{Suspect, Ghost, Alive, Killed, Gone}

// NewRing returns a ring that keeps the last size events (at least 1). now
// stamps events that come without a time; nil means time.Now.
func NewRing(size int, now func() time.Time) *Ring {
	if now == nil {
		now = time.Now
	}
	return &Ring{now: now, buf: make([]slot, max(size, 1))}
}

// Add records ev with the next sequence number (and the ring's time if
// ev.Time is zero), pushing out the oldest event when the ring is full,
// and returns the event as recorded.
func (r *Ring) Add(ev Event) Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addLocked(ev)
}

// addLocked is Add with r.mu held.
func (r *Ring) addLocked(ev Event) Event {
	r.seq++
	ev.Seq = r.seq
	if ev.Time.IsZero() {
		ev.Time = r.now()
	}
	if i := ev.Kind.index(); i >= 0 {
		r.kinds[i]++
	}
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)].put(&ev, &r.codes)
		r.n++
		return ev
	}
	r.buf[r.start].put(&ev, &r.codes)
	r.start = (r.start + 1) % len(r.buf)
	r.evicted++
	return ev
}

// AddBatch records n events of one kind, build(i) making the i-th, as n
// calls of Add would and under one hold of the lock, so that no query sees
// the batch half done. Only the events the ring will still hold at the end
// are built: the others are numbered, counted and counted as pushed out,
// as they would have been. A build that reports false records nothing
// (the event's subject went away meanwhile).
func (r *Ring) AddBatch(n int, kind Kind, build func(i int) (Event, bool)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	first := 0
	if skip := n - len(r.buf); skip > 0 {
		// Every event held now and the first skip of the batch are pushed
		// out by the batch's last len(r.buf).
		r.seq += uint64(skip)
		if i := kind.index(); i >= 0 {
			r.kinds[i] += uint64(skip)
		}
		r.evicted += uint64(r.n + skip)
		r.start, r.n, first = 0, 0, skip
	}
	for i := first; i < n; i++ {
		if ev, ok := build(i); ok {
			ev.Kind = kind
			r.addLocked(ev)
		}
	}
}

// at returns the i-th oldest event held; r.mu must be held.
func (r *Ring) at(i int) *slot { return &r.buf[(r.start+i)%len(r.buf)] }

// Stats counts what a ring recorded.
type Stats struct {
	// Recorded counts the events recorded since start, by kind (Kinds order).
	Recorded [len(kindNames)]uint64
	// Evicted counts events pushed out of the ring by newer ones: a client
	// that did not page in time cannot see them any more.
	Evicted uint64
}

// Stats returns the ring's counters.
func (r *Ring) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{Recorded: r.kinds, Evicted: r.evicted}
}

// DefaultLimit and MaxLimit bound the events one Query returns.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Query selects events. Zero fields select everything; within a list any
// value may match, and every non-empty list must match.
type Query struct {
	// SinceSeq selects events after this sequence number; SinceTime events
	// at or after this time. With either, the page holds the oldest
	// matching events; with neither, the newest.
	SinceSeq  uint64
	SinceTime time.Time
	// Forward pages from the oldest event even when both since fields
	// are zero (a client's since=0: from the start).
	Forward  bool
	Netns    []string
	Owners   []string // the event's owner name (Owner), unit or comm
	Verdicts []string
	Kinds    []Kind
	Limit    int // 0 means DefaultLimit; capped at MaxLimit
}

func (q *Query) since() bool { return q.Forward || q.SinceSeq > 0 || !q.SinceTime.IsZero() }

func (q *Query) match(ev *Event) bool {
	switch {
	case ev.Seq <= q.SinceSeq:
		return false
	case !q.SinceTime.IsZero() && ev.Time.Before(q.SinceTime):
		return false
	case len(q.Kinds) > 0 && !slices.Contains(q.Kinds, ev.Kind):
		return false
	case len(q.Netns) > 0 && !slices.Contains(q.Netns, ev.Netns):
		return false
	case len(q.Verdicts) > 0 && !slices.Contains(q.Verdicts, ev.Verdict):
		return false
	case len(q.Owners) > 0 && !slices.Contains(q.Owners, ev.Owner()) && !slices.Contains(q.Owners, ev.Unit) && !slices.Contains(q.Owners, ev.Comm):
		return false
	}
	return true
}

// Page is the answer to a Query.
type Page struct {
	Events []Event `json:"events"`
	// Next is the since for the following page: the last event's Seq, or
	// Latest when the page is empty.
	Next uint64 `json:"next"`
	// Oldest and Latest are the sequence numbers of the oldest event still
	// held and of the last one recorded (0 when none).
	Oldest uint64 `json:"oldest_seq"`
	Latest uint64 `json:"latest_seq"`
	// Missed says that events the query asked for have already left the
	// ring (SinceSeq older than Oldest - 1, or SinceTime older than the
	// oldest event held after some were evicted).
	Missed bool `json:"missed"`
	// More says that more events match after this page (with a since), or
	// before it (without one).
	More bool `json:"more"`
}

// Query returns the events q selects, oldest first.
func (r *Ring) Query(q Query) Page {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	r.mu.Lock()
	defer r.mu.Unlock()
	p := Page{Latest: r.seq, Events: []Event{}}
	if r.n > 0 {
		p.Oldest = r.at(0).seq
		if q.SinceSeq > 0 && q.SinceSeq+1 < p.Oldest {
			p.Missed = true
		}
		if !q.SinceTime.IsZero() && r.evicted > 0 && r.at(0).time.After(q.SinceTime) {
			p.Missed = true
		}
	} else if q.SinceSeq > 0 && q.SinceSeq < r.seq {
		p.Missed = true
	}
	// With a since, the oldest matches after it; without, the newest ones.
	first, step := 0, 1
	if !q.since() {
		first, step = r.n-1, -1
	}
	for i := first; i >= 0 && i < r.n; i += step {
		s := r.at(i)
		if ev := s.event(&r.codes, false); !q.match(&ev) {
			continue
		}
		if len(p.Events) == limit {
			p.More = true
			break
		}
		p.Events = append(p.Events, s.event(&r.codes, true))
	}
	if step < 0 {
		slices.Reverse(p.Events)
	}
	switch {
	case len(p.Events) > 0:
		p.Next = p.Events[len(p.Events)-1].Seq
	default: // every event up to the latest was looked at
		p.Next = max(q.SinceSeq, r.seq)
	}
	return p
}

// cloneEvent copies an event so that the caller's copy shares nothing
// mutable with the ring.
func cloneEvent(ev *Event) Event {
	c := *ev
	c.Reasons = slices.Clone(ev.Reasons)
	if ev.RTTSeconds != nil {
		v := *ev.RTTSeconds
		c.RTTSeconds = &v
	}
	return c
}
