package engine

import (
	"net/netip"
	"slices"
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

// listedTable holds the listed sockets of a scan, in chunks, with their
// order by key in a separate index.
type listedTable struct {
	chunks [][]listedSocket
	order  []uint32 // positions in key order, after sortByKey
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

func (t *listedTable) atPos(p uint32) *listedSocket { return &t.chunks[p/listedChunk][p%listedChunk] }

// at returns the i-th socket in key order.
func (t *listedTable) at(i int) *listedSocket { return t.atPos(t.order[i]) }

// sortByKey orders the table by (netns inode, cookie).
func (t *listedTable) sortByKey() {
	t.order = make([]uint32, t.len())
	for i := range t.order {
		t.order[i] = uint32(i)
	}
	slices.SortFunc(t.order, func(a, b uint32) int { return compareKeys(t.atPos(a).key(), t.atPos(b).key()) })
}

// find returns the socket with key k.
func (t *listedTable) find(k inventory.Key) (*listedSocket, bool) {
	i, ok := slices.BinarySearchFunc(t.order, k, func(p uint32, k inventory.Key) int { return compareKeys(t.atPos(p).key(), k) })
	if !ok {
		return nil, false
	}
	return t.atPos(t.order[i]), true
}
