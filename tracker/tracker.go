package tracker

import (
	"sync"
	"time"

	"github.com/ghostd/ghostd/internal/epoch"
	"github.com/ghostd/ghostd/inventory"
)

// Entry is what the tracker remembers about one socket. It remembers a
// socket while it has a reason, sits in CLOSE_WAIT, FIN_WAIT2 or LAST_ACK,
// probes a zero window, or has had a retransmission timeout: the states whose
// age or progress the next scan needs. A remembered socket costs about 290
// bytes on amd64, its index and Tag included (BenchmarkMemory); others cost
// nothing.
type Entry struct {
	Socket       inventory.Socket // as last observed
	FirstSeen    time.Time        // first observation since the tracker began remembering the socket
	LastSeen     time.Time        // last observation
	LastProgress time.Time        // last observation at which bytes_acked or bytes_received had grown (FirstSeen before that)
	SuspectSince time.Time        // since when Reasons has been non-empty; zero when it is empty
	// StateSince is when the socket entered its current state, as far as the
	// tracker can tell: the first observation in that state, or earlier for
	// CLOSE_WAIT and FIN_WAIT2, whose age is at least tcpi_last_ack_recv
	// (the ACK that moved the socket there is the oldest ACK it can remember).
	StateSince time.Time
	TimerSince time.Time // first observation with the current idiag_timer (both ways of probing a zero window count as one)
	Reasons    Reasons
	// Unavailable lists the reasons that could not be evaluated at the last
	// observation because the kernel did not send a field they need.
	Unavailable Reasons
	// Idle is min(tcpi_last_data_recv, tcpi_last_data_sent): how long no data
	// went either way. IdleKnown is false without tcp_info.
	Idle      time.Duration
	IdleKnown bool
	// Kernel is when the socket's own kernel would notice a dead peer, and
	// the keepalive settings that tell (worked out when the Entry is built).
	Kernel Kernel
	// Misses counts consecutive complete dumps of the namespace that did not
	// include the socket (the entry is dropped at 2).
	Misses uint8
	// Tag is what the tracker's user keeps with the socket (see SetTag).
	Tag Tag
}

// Tag is 32 bytes a tracker's user keeps with a remembered socket (the daemon
// keeps its last probe's verdict there). It lives and dies with the entry,
// and is cleared when the socket stops being a probeable suspect (see
// Reasons.Probeable): what a probe said about an idle socket says nothing
// once it has moved data. Kept inside the entry, it costs no lookup in a
// pass over every suspect and no map of its own.
type Tag [32]byte

// SetTag sets a remembered socket's tag and reports whether the socket is
// remembered; a socket the tracker does not hold cannot be tagged.
func (t *Tracker) SetTag(k inventory.Key, tag Tag) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.lookupLocked(k)
	if e != nil {
		e.tag = tag
	}
	return e != nil
}

// Tag returns a remembered socket's tag (zero until SetTag).
func (t *Tracker) Tag(k inventory.Key) (Tag, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.lookupLocked(k); e != nil {
		return e.tag, true
	}
	return Tag{}, false
}

// lookupLocked returns a remembered socket's entry, or nil.
func (t *Tracker) lookupLocked(k inventory.Key) *entry {
	if ns := t.nss[k.Netns]; ns != nil {
		e, _ := ns.lookup(k.Cookie)
		return e
	}
	return nil
}

// Tracker keeps history for the sockets that need it and classifies every
// socket it observes. Sockets with no reason and nothing to remember (a
// healthy ESTABLISHED socket) cost nothing. It is safe for concurrent use.
type Tracker struct {
	mu        sync.Mutex
	cfg       Config
	nss       map[uint64]*namespace
	last      *namespace // cache: consecutive observations come from one namespace
	lastNetns uint64
	n         int
	// epoch is the first observation time the tracker remembered; entries
	// store times as stamps from it.
	epoch    epoch.Epoch
	hasEpoch bool
	// newSuspects counts the times a socket became a suspect (NewSuspects).
	newSuspects uint64
	// refused counts sockets not remembered because of MaxEntries.
	refused uint64
}

// Refused counts the sockets that needed remembering but were refused by
// Config.MaxEntries since New.
func (t *Tracker) Refused() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refused
}

// admit reports whether a new entry fits in ns under MaxEntries.
func (t *Tracker) admit(ns *namespace) bool {
	limit := t.cfg.MaxEntries
	return t.n < limit || ns.len() < limit/max(1, len(t.nss))
}

// NewSuspects counts the times a socket became a suspect since New: when it
// has not moved, every suspect is one a caller has already seen.
func (t *Tracker) NewSuspects() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.newSuspects
}

// New returns an empty tracker; zero fields of cfg take their defaults.
func New(cfg Config) *Tracker {
	return &Tracker{cfg: cfg.withDefaults(), nss: make(map[uint64]*namespace)}
}

// SetConfig changes the thresholds for the following observations.
func (t *Tracker) SetConfig(cfg Config) {
	t.mu.Lock()
	t.cfg = cfg.withDefaults()
	t.mu.Unlock()
}

// Config returns the thresholds in use, defaults filled in.
func (t *Tracker) Config() Config {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cfg
}

func (t *Tracker) namespace(netns uint64, create bool) *namespace {
	if t.last != nil && t.lastNetns == netns {
		return t.last
	}
	ns := t.nss[netns]
	if ns == nil {
		if !create {
			return nil
		}
		ns = newNamespace()
		t.nss[netns] = ns
	}
	t.last, t.lastNetns = ns, netns
	return ns
}

// Observe classifies s with its tcp_info and its history, remembers what the
// next scan needs, and returns the socket's reasons. now should not be
// earlier than the moment the kernel wrote s (take it after receiving the
// dump datagram, or at least per namespace): a state age bounded from
// tcp_info (CLOSE_WAIT, FIN_WAIT2) comes out older by the difference.
//
// The times of an Entry are kept as offsets from the first now the tracker
// remembered (its epoch), and come back in its location and with a monotonic
// clock reading if it had one: exactly as given when every now comes from
// one clock without monotonic readings (a test clock), else Equal to them
// (a wall clock reading comes back as the epoch's plus the monotonic time
// elapsed).
func (t *Tracker) Observe(now time.Time, s *inventory.Socket) Reasons {
	rs, _ := t.observe(now, s)
	return rs
}

// observe is Observe that also returns the reasons that could not be
// evaluated because the kernel did not send a field they need.
func (t *Tracker) observe(now time.Time, s *inventory.Socket) (reasons, unavailable Reasons) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.namespace(s.Netns, true)
	e, p := ns.observed(s.Cookie)
	// Own settings are kept while their socket is in the dumps, healthy or not.
	own, hasOwn := ns.touchOwn(s.Cookie)
	if e == nil && healthy(&t.cfg, s) {
		return 0, 0
	}
	var prev *history
	if e != nil {
		h := t.history(e)
		prev = &h
	}
	c := classify(&t.cfg, now, s, prev, &ns.sysctls, optional(&own, hasOwn))
	if !c.keep {
		if e != nil {
			ns.remove(p)
			t.n--
		}
		return c.reasons, c.unavailable
	}
	if !t.hasEpoch {
		t.epoch, t.hasEpoch = epoch.New(now), true
	}
	if e == nil && !t.admit(ns) {
		t.refused++
		return c.reasons, c.unavailable
	}
	at := t.epoch.Stamp(now)
	if e == nil {
		e = ns.add(s.Cookie)
		e.firstSeen, e.lastProgress, e.suspectSince = at, at, epoch.Zero
		t.n++
	}
	e.setSocket(s)
	e.lastSeen = at
	if c.progress {
		e.lastProgress = at
	}
	if c.reasons.Empty() {
		e.suspectSince = epoch.Zero
	} else if e.reasons.Empty() || e.suspectSince == epoch.Zero {
		e.suspectSince = at
		t.newSuspects++
	}
	e.stateSince, e.timerSince = t.epoch.Stamp(c.stateSince), t.epoch.Stamp(c.timerSince)
	e.reasons, e.unavailable = c.reasons, c.unavailable
	e.gen, e.misses = ns.gen, 0
	// A verdict is evidence about a connection that moved no data: bytes
	// moving either way since the last scan make it stale, whatever it said.
	if !c.reasons.Probeable() || c.progress {
		e.tag = Tag{}
	}
	return c.reasons, c.unavailable
}

// EndNamespace tells the tracker that a complete dump of netns has been
// observed. Remembered sockets of netns that were not observed since the
// previous EndNamespace get one miss; at two consecutive misses they are
// forgotten (dumps are not snapshots: a socket can be skipped once).
func (t *Tracker) EndNamespace(now time.Time, netns uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.namespace(netns, false)
	if ns == nil {
		return
	}
	if len(ns.own) > 0 {
		ns.pruneOwn()
	}
	// Backwards: remove moves the last entry, already visited, into the hole.
	for p := int32(ns.len()) - 1; p >= 0; p-- {
		e := ns.at(p)
		if e.gen == ns.gen {
			continue
		}
		e.misses++
		if e.misses >= 2 {
			ns.remove(p)
			t.n--
		}
	}
	ns.gen++
}

// DropNamespace forgets every socket of netns (the namespace is gone).
func (t *Tracker) DropNamespace(netns uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ns := t.nss[netns]; ns != nil {
		t.n -= ns.len()
		delete(t.nss, netns)
	}
	if t.lastNetns == netns {
		t.last = nil
	}
}

// Get returns what the tracker remembers about a socket; healthy sockets
// with nothing to remember are not found.
func (t *Tracker) Get(k inventory.Key) (Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.getLocked(k)
}

func (t *Tracker) getLocked(k inventory.Key) (Entry, bool) {
	var out Entry
	if ns := t.nss[k.Netns]; ns != nil {
		if e, _ := ns.lookup(k.Cookie); e != nil {
			t.fill(&out, k.Netns, ns, e)
			return out, true
		}
	}
	return out, false
}

// Len returns the number of remembered sockets.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// eachSuspect calls fn for every stored entry with a reason, under the lock.
func (t *Tracker) eachSuspect(fn func(netns uint64, ns *namespace, e *entry)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for netns, ns := range t.nss {
		for _, c := range ns.chunks {
			for i := range c {
				if e := &c[i]; !e.reasons.Empty() {
					fn(netns, ns, e)
				}
			}
		}
	}
}

// Brief is what the daemon's per-scan passes over every suspect need of
// one: cheaper to produce than an Entry, which rebuilds the whole socket.
type Brief struct {
	Key     inventory.Key
	Reasons Reasons
	Family  uint8
	Inode   uint32
	// LastDataRecv is tcpi_last_data_recv in milliseconds; InfoValid says
	// whether the kernel sent a tcp_info.
	LastDataRecv uint32
	InfoValid    bool
	Tag          Tag
	// SuspectSince and Misses are the Entry's (the daemon's event history
	// tells new suspects and vanished ones by them).
	SuspectSince time.Time
	Misses       uint8
	// LastAck is the Entry's LastAck.
	LastAck time.Time
}

// LastAck is when the socket last took an ACK, as its last observation's
// tcpi_last_ack_recv tells; zero without tcp_info. A probe's answer counts
// too: the socket's kernel takes the peer's duplicate ACK.
func (e *Entry) LastAck() time.Time { return lastAckAt(e.LastSeen, &e.Socket.Info) }

func lastAckAt(seen time.Time, info *inventory.TCPInfo) time.Time {
	if !info.Valid() {
		return time.Time{}
	}
	return seen.Add(-ms(info.LastAckRecv))
}

// EachSuspectBrief calls fn with a Brief of every remembered socket that has
// at least one reason, in no particular order, without allocating per
// socket: the daemon's per-scan path over hosts with hundreds of thousands
// of idle suspects. The Brief is reused: it is valid only until fn returns.
// fn must not call the tracker.
func (t *Tracker) EachSuspectBrief(fn func(*Brief)) {
	var b Brief
	t.eachSuspect(func(netns uint64, _ *namespace, e *entry) {
		b = t.brief(netns, e)
		fn(&b)
	})
}

// BriefOf returns the Brief of a remembered socket, suspect or not.
func (t *Tracker) BriefOf(k inventory.Key) (Brief, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.lookupLocked(k); e != nil {
		return t.brief(k.Netns, e), true
	}
	return Brief{}, false
}

func (t *Tracker) brief(netns uint64, e *entry) Brief {
	return Brief{
		Key: inventory.Key{Netns: netns, Cookie: e.cookie}, Reasons: e.reasons,
		Family: e.family, Inode: e.inode, LastDataRecv: e.info.LastDataRecv, InfoValid: e.info.Valid(),
		Tag: e.tag, SuspectSince: t.epoch.Time(e.suspectSince), Misses: e.misses,
		LastAck: lastAckAt(t.epoch.Time(e.lastSeen), &e.info),
	}
}

// Reasons returns a remembered socket's reasons without copying its entry.
func (t *Tracker) Reasons(k inventory.Key) (Reasons, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.lookupLocked(k); e != nil {
		return e.reasons, true
	}
	return 0, false
}
