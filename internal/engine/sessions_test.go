package engine

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/tracker"
)

// TestEachSessionBatches: sessions come in (netns, cookie) order, in
// batches, and stop when fn says so; the document and TopSessions agree.
func TestEachSessionBatches(t *testing.T) {
	e, inv, _, _ := newTest()
	ctx := context.Background()
	n := 2*sessionBatch + 5
	for i := n; i > 0; i-- { // the dump order is not the cookie order
		inv.sockets[7] = append(inv.sockets[7], idleSocket(uint64(i), 1, time.Duration(i)*time.Minute))
	}
	inv.sockets[7] = append(inv.sockets[7], idleSocket(uint64(n+1), 2, 2*time.Minute)) // a ghost
	e.Scan(ctx)
	e.Probe(ctx, e.Targets())

	var sizes []int
	var got []uint64
	e.EachSession(func(b []exporter.Session) bool {
		sizes = append(sizes, len(b))
		for _, s := range b {
			got = append(got, s.Cookie)
		}
		return true
	})
	if !cmp.Equal(sizes, []int{sessionBatch, sessionBatch, 6}) || !slices.IsSorted(got) || len(got) != n+1 {
		t.Errorf("batches %v, %d sessions, sorted %v", sizes, len(got), slices.IsSorted(got))
	}
	calls := 0
	e.EachSession(func([]exporter.Session) bool { calls++; return false })
	if calls != 1 {
		t.Errorf("fn called %d times after returning false, want 1", calls)
	}
	if doc := e.Document(); len(doc.Sessions) != n+1 || doc.Sessions[0].Cookie != 1 {
		t.Errorf("document: %d sessions from cookie %d", len(doc.Sessions), doc.Sessions[0].Cookie)
	}
	top := e.TopSessions(3)
	var topCookies []uint64
	for _, s := range top {
		topCookies = append(topCookies, s.Cookie)
	}
	// The ghost first, then the longest idle.
	if diff := cmp.Diff([]uint64{uint64(n + 1), uint64(n), uint64(n - 1)}, topCookies); diff != "" {
		t.Errorf("top sessions (-want +got):\n%s", diff)
	}
}

// TestListedSocketSession: a socket kept compactly for scan --all gives the
// same session as the whole socket did, kernel deadline included, for both
// families, v4-mapped addresses, every timer and no tcp_info.
func TestListedSocketSession(t *testing.T) {
	e, _, _, c := newTest()
	e.scanned = c.t.Add(-1500 * time.Millisecond)
	v4 := idleSocket(1, 1, 2*time.Minute)
	v6 := v4
	v6.Cookie, v6.Family = 2, inventory.FamilyInet6
	v6.Local, v6.Remote = netip.MustParseAddrPort("[2001:db8::1]:443"), netip.MustParseAddrPort("[2001:db8::2]:50000")
	mapped := v6
	mapped.Cookie, mapped.Remote = 3, netip.MustParseAddrPort("[::ffff:192.0.2.9]:7")
	keepalive := v4
	keepalive.Cookie, keepalive.Timer, keepalive.Expires = 4, inventory.TimerKeepalive, 7000
	retrans := v4
	retrans.Cookie, retrans.Timer, retrans.Retrans, retrans.Expires, retrans.WQueue = 5, inventory.TimerRetransmit, 3, 1600, 100
	retrans.Info = inventory.TCPInfo{} // without it, no send window says the timer probes a zero window
	delayedAck := v4
	delayedAck.Cookie, delayedAck.Timer = 8, inventory.TimerDelayedAck
	noInfo := v4
	noInfo.Cookie, noInfo.Info = 6, inventory.TCPInfo{}
	timeWait := v4
	timeWait.Cookie, timeWait.State, timeWait.Timer, timeWait.Expires, timeWait.UID, timeWait.Inode = 7, inventory.StateTimeWait, inventory.TimerTimeWait, 30000, 1000, 0
	bases := map[string]bool{}
	for _, sk := range []inventory.Socket{v4, v6, mapped, keepalive, retrans, noInfo, timeWait, delayedAck} {
		sk.Netns = 7
		want := e.session(&tracker.Entry{Socket: sk}, c.t)
		bases[want.KernelDeadlineBasis] = true
		l := listSocket(&sk, e.tracker.KernelOf(&sk).Deadline)
		ent := l.entry(e.scanned)
		if got := e.session(&ent, c.t); !cmp.Equal(want, got) {
			t.Errorf("cookie %d (-whole socket +listed):\n%s", sk.Cookie, cmp.Diff(want, got))
		}
		if l.key() != sk.Key() {
			t.Errorf("cookie %d: key %v, want %v", sk.Cookie, l.key(), sk.Key())
		}
	}
	for _, b := range []string{tracker.DeadlineKeepalive, tracker.DeadlineRetransmit, tracker.DeadlineTimeWait, tracker.DeadlineNone, tracker.DeadlineUnknown} {
		if !bases[b] {
			t.Errorf("no socket with kernel deadline basis %q: the test covers %v", b, bases)
		}
	}
}

// TestListedTable: across chunk boundaries, the table lists its sockets in
// key order and finds each by key.
func TestListedTable(t *testing.T) {
	var tab listedTable
	n := 2*listedChunk + 17
	inodes := map[inventory.Key]uint32{}
	for i := range n {
		// Keys out of order, across two namespaces.
		c := uint64(i*7919) % uint64(n)
		l := listedSocket{netns: uint64(1 + i%2), cookie: c, inode: uint32(i)}
		tab.add(l)
		inodes[l.key()] = l.inode
	}
	tab.sortByKey()
	if tab.len() != n {
		t.Fatalf("len %d, want %d", tab.len(), n)
	}
	for i := 1; i < n; i++ {
		if compareKeys(tab.at(i-1).key(), tab.at(i).key()) >= 0 {
			t.Fatalf("at(%d) %v is not before at(%d) %v", i-1, tab.at(i-1).key(), i, tab.at(i).key())
		}
	}
	// The sockets moved whole, each with its own key.
	for i := range n {
		if l := tab.at(i); l.inode != inodes[l.key()] {
			t.Fatalf("at(%d) %v holds inode %d, added with %d", i, l.key(), l.inode, inodes[l.key()])
		}
	}
	for i := range n {
		want := tab.at(i)
		got, ok := tab.find(want.key())
		if !ok || got != want {
			t.Fatalf("find(%v) = %v, %v; want %v", want.key(), got, ok, want)
		}
	}
	if _, ok := tab.find(inventory.Key{Netns: 3, Cookie: 1}); ok {
		t.Error("found a key never added")
	}
}

// TestRadixSortKeys orders keys as a stable comparison sort does, whichever
// of their bytes differ: none, low cookie bytes only, high ones, the
// namespace's.
func TestRadixSortKeys(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	masks := []struct{ netns, cookie uint64 }{{0, 0}, {0, 0xffff}, {0, 0xff0000ff00}, {3, 0xff}, {0xff00000000ff, ^uint64(0)}}
	for _, m := range masks {
		for _, n := range []int{0, 1, 2, 1000} {
			keys := make([]sortKey, n)
			for i := range keys {
				keys[i] = sortKey{inventory.Key{Netns: 4026531840 | r.Uint64()&m.netns, Cookie: 1<<50 | r.Uint64()&m.cookie}, uint32(i)}
			}
			want := slices.Clone(keys)
			slices.SortStableFunc(want, func(a, b sortKey) int { return compareKeys(a.key, b.key) })
			radixSortKeys(keys)
			if !slices.Equal(keys, want) {
				t.Errorf("masks %x, %d keys: radix order differs from a stable sort", m, n)
			}
		}
	}
}

// Document returns the last scan with every session listed, as `ghostd
// scan` printed it before it streamed: a test helper (scan lists sessions
// with EachSessionAt, a batch at a time).
func (e *Engine) Document() exporter.Document {
	e.resolveOwners(true)
	e.mu.Lock()
	doc := e.frameLocked().Doc
	e.mu.Unlock()
	doc.Sessions = []exporter.Session{}
	e.EachSession(func(b []exporter.Session) bool {
		doc.Sessions = append(doc.Sessions, b...)
		return true
	})
	return doc
}

// sourceInv is fakeInv that says which source served each namespace.
type sourceInv struct {
	fakeInv
	source map[uint64]string
}

func (f *sourceInv) Scan(ctx context.Context, states inventory.StateMask, fn func(*inventory.Namespace, *inventory.Socket) error) []inventory.NamespaceResult {
	out := f.fakeInv.Scan(ctx, states, fn)
	for i := range out {
		out[i].Source = f.source[out[i].Inode]
	}
	return out
}

// TestNamespaceSource: the JSON document says how each namespace's sockets
// were listed.
func TestNamespaceSource(t *testing.T) {
	inv := &sourceInv{
		fakeInv: fakeInv{ns: []inventory.Namespace{{Inode: 1, Name: "host"}, {Inode: 2, Name: "pod"}}},
		source:  map[uint64]string{1: inventory.SourceWalk, 2: inventory.SourceSockDiag},
	}
	e := New(inv, nil, nil, Options{Tracker: tracker.Config{Idle: time.Minute}})
	e.Scan(context.Background())
	snap, _ := e.Snapshot()
	want := []exporter.NamespaceStatus{
		{Netns: "host", NetnsInode: 1, Source: "bpf_walk"},
		{Netns: "pod", NetnsInode: 2, Source: "sock_diag"},
	}
	if diff := cmp.Diff(want, snap.Doc.Namespaces); diff != "" {
		t.Errorf("namespaces (-want +got):\n%s", diff)
	}
}

// TestSessionGuarded: a session says whether its last probe went out behind
// the reset guard.
func TestSessionGuarded(t *testing.T) {
	e, inv, pr, _ := newTest()
	pr.guarded = map[uint16]bool{2: true}
	inv.sockets[7] = []inventory.Socket{idleSocket(1, 1, 2*time.Minute), idleSocket(2, 2, 2*time.Minute), idleSocket(3, 3, 2*time.Minute)}
	e.Scan(context.Background())
	e.Probe(context.Background(), e.Targets())
	got := map[uint64]bool{}
	for _, s := range e.Document().Sessions {
		got[s.Cookie] = s.Guarded
	}
	if want := map[uint64]bool{1: false, 2: true, 3: false}; !cmp.Equal(got, want) {
		t.Errorf("guarded by cookie %v, want %v", got, want)
	}
}
