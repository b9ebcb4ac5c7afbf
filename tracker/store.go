package tracker

import (
	"net/netip"
	"unsafe"

	"github.com/ghostd/ghostd/internal/addrpack"
	"github.com/ghostd/ghostd/internal/epoch"
	"github.com/ghostd/ghostd/inventory"
)

// entry is how the tracker stores a remembered socket: an Entry without
// anything that can be derived from the rest (the namespace inode is the
// namespace's, Idle and the byte counters come from the tcp_info) and without
// pointers, so that the garbage collector never scans the entries. Times are
// stamps from the tracker's epoch (package epoch), addresses 16 bytes
// and a kind. The tcp_info is kept whole: Entry.Socket is the socket as last
// observed, field for field.
type entry struct {
	cookie uint64
	// Offsets of FirstSeen, LastSeen, LastProgress, SuspectSince, StateSince
	// and TimerSince; epoch.Zero stands for the zero time.
	firstSeen, lastSeen, lastProgress, suspectSince, stateSince, timerSince epoch.Stamp

	info                                         inventory.TCPInfo
	expires, rqueue, wqueue, uid, inode, ifindex uint32
	local, remote                                [16]byte // As16 of the addresses
	localPort, remotePort                        uint16
	reasons, unavailable                         Reasons
	family                                       uint8
	state                                        inventory.State
	timer                                        inventory.Timer
	retrans                                      uint8
	flags                                        uint8 // address kinds (addrpack.Pair)
	misses                                       uint8
	gen                                          uint8 // the namespace's gen at the last observation (see namespace.gen)
	tag                                          Tag
}

// chunkLen is how many entries fill a 32 KiB allocation: entries live in
// chunks of that many, so that a namespace's storage grows without copying
// (and without holding the old and the new array at once) and without
// rounding waste beyond the last chunk.
const chunkLen = 32 << 10 / int32(unsafe.Sizeof(entry{}))

// firstChunkLen is the first chunk's initial capacity; it doubles up to
// chunkLen, so that a namespace with a few remembered sockets stays small.
const firstChunkLen = 4

// namespace holds the remembered sockets of one network namespace, densely:
// removing an entry moves the last one into its place.
type namespace struct {
	// gen counts EndNamespace calls. An entry observed since the last one
	// has the same gen; it is at most 2 behind (then it is dropped), so a
	// byte that wraps is enough.
	gen    uint8
	index  map[uint64]int32 // cookie → position in chunks
	chunks [][]entry        // every chunk but the last holds chunkLen entries
	// next is where the next observation is likeliest to be: the entry
	// after the last one observed. Entries are stored in the order of their
	// first observation, and the kernel dumps a namespace's sockets in the
	// same order every time, so a scan walks the entries in order and most
	// lookups need no probe of the index, which at 200 000 entries no longer
	// fits in the CPU's caches.
	next int32
	// sysctls are the namespace's (SetSysctls); zero fields mean the
	// kernel's defaults.
	sysctls inventory.TCPSysctls
	// own holds the sockets' own keepalive settings where known
	// (SetKeepalive), by cookie; nil while there are none.
	own map[uint64]ownSettings
}

func newNamespace() *namespace {
	return &namespace{index: make(map[uint64]int32)}
}

func (ns *namespace) len() int { return len(ns.index) }

// at returns the entry at position p.
func (ns *namespace) at(p int32) *entry { return &ns.chunks[p/chunkLen][p%chunkLen] }

// lookup returns the entry of a cookie, or nil.
func (ns *namespace) lookup(cookie uint64) (*entry, int32) {
	p, ok := ns.index[cookie]
	if !ok {
		return nil, -1
	}
	return ns.at(p), p
}

// observed is lookup for the scan path: it tries the position after the
// previous observation before the index.
func (ns *namespace) observed(cookie uint64) (*entry, int32) {
	if p := ns.next; p < int32(ns.len()) {
		if e := ns.at(p); e.cookie == cookie {
			ns.next = p + 1
			return e, p
		}
	}
	e, p := ns.lookup(cookie)
	if e != nil {
		ns.next = p + 1
	}
	return e, p
}

// add appends a zero entry for cookie and returns it.
func (ns *namespace) add(cookie uint64) *entry {
	last := len(ns.chunks) - 1
	switch {
	case last < 0:
		ns.chunks = append(ns.chunks, make([]entry, 0, firstChunkLen))
		last = 0
	case int32(len(ns.chunks[last])) == chunkLen:
		ns.chunks = append(ns.chunks, make([]entry, 0, chunkLen))
		last++
	case len(ns.chunks[last]) == cap(ns.chunks[last]): // only the first chunk grows
		grown := make([]entry, len(ns.chunks[last]), min(2*cap(ns.chunks[last]), int(chunkLen)))
		copy(grown, ns.chunks[last])
		ns.chunks[last] = grown
	}
	ns.index[cookie] = int32(ns.len())
	c := append(ns.chunks[last], entry{cookie: cookie})
	ns.chunks[last] = c
	return &c[len(c)-1]
}

// remove forgets the entry at position p, moving the last entry there.
func (ns *namespace) remove(p int32) {
	e := ns.at(p)
	delete(ns.index, e.cookie)
	last := len(ns.chunks) - 1
	c := ns.chunks[last]
	if moved := &c[len(c)-1]; moved != e {
		*e = *moved
		ns.index[e.cookie] = p
	}
	c = c[:len(c)-1]
	ns.chunks[last] = c
	if len(c) == 0 {
		ns.chunks[last] = nil
		ns.chunks = ns.chunks[:last]
	}
}

// setSocket stores s (but its Netns and Cookie, which the entry's place says).
func (e *entry) setSocket(s *inventory.Socket) {
	e.info = s.Info
	e.expires, e.rqueue, e.wqueue, e.uid, e.inode, e.ifindex = s.Expires, s.RQueue, s.WQueue, s.UID, s.Inode, s.Ifindex
	var lk, rk uint8
	e.local, lk = addrpack.Pack(s.Local.Addr())
	e.remote, rk = addrpack.Pack(s.Remote.Addr())
	e.localPort, e.remotePort = s.Local.Port(), s.Remote.Port()
	e.family, e.state, e.timer, e.retrans = s.Family, s.State, s.Timer, s.Retrans
	e.flags = addrpack.Pair(lk, rk)
}

// socket rebuilds the socket as last observed.
func (e *entry) socket(netns uint64) inventory.Socket {
	return inventory.Socket{
		Netns: netns, Family: e.family, State: e.state, Timer: e.timer, Retrans: e.retrans,
		Expires: e.expires, RQueue: e.rqueue, WQueue: e.wqueue, UID: e.uid, Inode: e.inode,
		Cookie: e.cookie, Ifindex: e.ifindex,
		Local:  netip.AddrPortFrom(addrpack.Unpack(e.local, addrpack.Local(e.flags)), e.localPort),
		Remote: netip.AddrPortFrom(addrpack.Unpack(e.remote, addrpack.Remote(e.flags)), e.remotePort),
		Info:   e.info,
	}
}

// fill rebuilds the public Entry of e, in ns, into dst.
func (t *Tracker) fill(dst *Entry, netns uint64, ns *namespace, e *entry) {
	*dst = Entry{
		Socket:       e.socket(netns),
		FirstSeen:    t.epoch.Time(e.firstSeen),
		LastSeen:     t.epoch.Time(e.lastSeen),
		LastProgress: t.epoch.Time(e.lastProgress),
		SuspectSince: t.epoch.Time(e.suspectSince),
		StateSince:   t.epoch.Time(e.stateSince),
		TimerSince:   t.epoch.Time(e.timerSince),
		Reasons:      e.reasons,
		Unavailable:  e.unavailable,
		Misses:       e.misses,
		Tag:          e.tag,
	}
	dst.Idle, dst.IdleKnown = idleOf(&e.info)
	own, ok := ns.ownSettings(e.cookie)
	dst.Kernel = kernelOf(&ns.sysctls, optional(&own, ok), &dst.Socket)
}

// history returns what classify needs to know about the previous observation.
func (t *Tracker) history(e *entry) history {
	h := history{
		state:      e.state,
		timerKind:  timerKindOf(e.timer, &e.info),
		lastSeen:   t.epoch.Time(e.lastSeen),
		stateSince: t.epoch.Time(e.stateSince),
		timerSince: t.epoch.Time(e.timerSince),
		reasons:    e.reasons,
	}
	h.bytesAcked, h.hasAcked = e.info.BytesAcked()
	h.bytesRecv, h.hasRecv = e.info.BytesReceived()
	return h
}
