package engine

import (
	"net/netip"
	"sort"
	"time"

	"github.com/ghostd/ghostd/internal/addrpack"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/tracker"
)

// listedSocket is a socket of the last scan kept for Options.All (`ghostd
// scan --all`): what its session needs, worked out during the scan, without
// pointers and in a fifth of an inventory.Socket (tcp_info included), so
// that listing 200 000 sockets holds ~17 MB the collector never scans.
type listedSocket struct {
	netns, cookie            uint64
	deadlineIn               time.Duration
	local, remote            [16]byte
	inode, uid, lastDataRecv uint32
	lport, rport             uint16
	family                   uint8
	state                    inventory.State
	addrs                    uint8 // address kinds (addrpack.Pair)
	flags                    uint8 // listedInfoValid, listedNever, listedLowerBound
	basis                    uint8 // index in deadlineBases
}

const (
	listedInfoValid = 1 << iota
	listedNever
	listedLowerBound
)

// deadlineBases lists tracker.Deadline's bases; "" first.
var deadlineBases = []string{"", tracker.DeadlineKeepalive, tracker.DeadlineUserTimeout, tracker.DeadlineRetransmit,
	tracker.DeadlineZeroWindow, tracker.DeadlineTimeWait, tracker.DeadlineNone, tracker.DeadlineUnknown}

// listSocket keeps what sk's session needs, with its kernel deadline (as
// the tracker works it out for sk in its namespace, at the scan).
func listSocket(sk *inventory.Socket, d tracker.Deadline) listedSocket {
	local, lk := addrpack.Pack(sk.Local.Addr())
	remote, rk := addrpack.Pack(sk.Remote.Addr())
	l := listedSocket{
		netns: sk.Netns, cookie: sk.Cookie, deadlineIn: d.In,
		local: local, remote: remote,
		inode: sk.Inode, uid: sk.UID, lastDataRecv: sk.Info.LastDataRecv,
		lport: sk.Local.Port(), rport: sk.Remote.Port(),
		family: sk.Family, state: sk.State,
		addrs: addrpack.Pair(lk, rk),
		basis: packIndex(deadlineBases, d.Basis),
	}
	if sk.Info.Valid() {
		l.flags |= listedInfoValid
	}
	if d.Never {
		l.flags |= listedNever
	}
	if d.LowerBound {
		l.flags |= listedLowerBound
	}
	return l
}

func (l *listedSocket) key() inventory.Key { return inventory.Key{Netns: l.netns, Cookie: l.cookie} }

// entry returns a tracker entry for l's session: the socket's identity,
// addresses and idle time, its kernel deadline as observed at scanned, and
// no reasons or verdict (a socket the tracker does not remember has none).
func (l *listedSocket) entry(scanned time.Time) tracker.Entry {
	ent := tracker.Entry{
		Socket: inventory.Socket{
			Netns: l.netns, Cookie: l.cookie, Family: l.family, State: l.state,
			Local:  netip.AddrPortFrom(addrpack.Unpack(l.local, addrpack.Local(l.addrs)), l.lport),
			Remote: netip.AddrPortFrom(addrpack.Unpack(l.remote, addrpack.Remote(l.addrs)), l.rport),
			Inode:  l.inode, UID: l.uid,
		},
		LastSeen: scanned,
	}
	if l.flags&listedInfoValid != 0 {
		ent.Socket.Info.Len = inventory.MinInfoLen
		ent.Socket.Info.LastDataRecv = l.lastDataRecv
	}
	ent.Kernel.Deadline = tracker.Deadline{
		Basis: deadlineBases[l.basis], In: l.deadlineIn,
		Never: l.flags&listedNever != 0, LowerBound: l.flags&listedLowerBound != 0,
	}
	return ent
}

// listedChunk is how many listed sockets share one allocation (320 KiB):
// the table grows a chunk at a time, never copying what it holds, so a scan
// of 200 000 sockets peaks at their size, not at twice it.
const listedChunk = 4096

// listedTable holds the listed sockets of a scan, in chunks; sortByKey puts
// them in key order in place.
type listedTable struct {
	chunks [][]listedSocket
}

func (t *listedTable) add(l listedSocket) {
	if n := len(t.chunks); n == 0 || len(t.chunks[n-1]) == listedChunk {
		t.chunks = append(t.chunks, make([]listedSocket, 0, listedChunk))
	}
	last := &t.chunks[len(t.chunks)-1]
	*last = append(*last, l)
}

func (t *listedTable) len() int {
	if len(t.chunks) == 0 {
		return 0
	}
	return (len(t.chunks)-1)*listedChunk + len(t.chunks[len(t.chunks)-1])
}

// at returns the i-th socket: in key order after sortByKey.
func (t *listedTable) at(i int) *listedSocket { return &t.chunks[i/listedChunk][i%listedChunk] }

// sortKey is a socket's key and its position in the table, sorted apart
// from the sockets (24 bytes each instead of 80).
type sortKey struct {
	key inventory.Key
	pos uint32
}

// sortByKey orders the table by (netns inode, cookie), moving the sockets
// themselves: every pass that follows (owners, counts, the listing) then
// reads the table front to back, where following a sorted index jumped
// around 16 MB at 200 000 sockets and missed the cache at nearly every
// socket. The keys are sorted apart from the sockets, then the sockets
// follow the permutation's cycles, one move each, with one socket of
// scratch.
func (t *listedTable) sortByKey() {
	n := t.len()
	keys := make([]sortKey, n)
	for i := range keys {
		keys[i] = sortKey{t.at(i).key(), uint32(i)}
	}
	radixSortKeys(keys)
	// Position i takes the socket at keys[i].pos; a position done points
	// to itself.
	for i := range n {
		if keys[i].pos == uint32(i) {
			continue
		}
		tmp := *t.at(i)
		j := i
		for {
			k := int(keys[j].pos)
			keys[j].pos = uint32(j)
			if k == i {
				*t.at(j) = tmp
				break
			}
			*t.at(j) = *t.at(k)
			j = k
		}
	}
}

// radixSortKeys sorts keys by (netns, cookie), stably, a byte at a time
// from the cookie's lowest to the netns's highest, skipping the bytes that
// are the same in every key: cookies are a counter, so a scan's differ in
// two or three bytes and its namespaces in one or none. Three passes over
// 200 000 keys cost less than half of a comparison sort's ~3.5 million
// calls of a comparison function.
func radixSortKeys(keys []sortKey) {
	if len(keys) < 2 {
		return
	}
	var cookies, netns uint64 // the bits that differ somewhere
	for i := range keys {
		cookies |= keys[i].key.Cookie ^ keys[0].key.Cookie
		netns |= keys[i].key.Netns ^ keys[0].key.Netns
	}
	src, dst := keys, make([]sortKey, len(keys))
	pass := func(byteOf func(*sortKey) uint8) {
		var count [256]int
		for i := range src {
			count[byteOf(&src[i])]++
		}
		at := 0
		for b, c := range count {
			count[b] = at
			at += c
		}
		for i := range src {
			b := byteOf(&src[i])
			dst[count[b]] = src[i]
			count[b]++
		}
		src, dst = dst, src
	}
	for shift := 0; shift < 64; shift += 8 {
		if cookies>>shift&0xff != 0 {
			pass(func(k *sortKey) uint8 { return uint8(k.key.Cookie >> shift) })
		}
	}
	for shift := 0; shift < 64; shift += 8 {
		if netns>>shift&0xff != 0 {
			pass(func(k *sortKey) uint8 { return uint8(k.key.Netns >> shift) })
		}
	}
	if &src[0] != &keys[0] {
		copy(keys, src)
	}
}

// find returns the socket with key k; the table must be sorted.
func (t *listedTable) find(k inventory.Key) (*listedSocket, bool) {
	i, ok := sort.Find(t.len(), func(i int) int { return compareKeys(k, t.at(i).key()) })
	if !ok {
		return nil, false
	}
	return t.at(i), true
}
