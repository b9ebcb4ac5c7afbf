package engine

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/epoch"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// TestTargetsPriority: never-probed suspects first, then ghosts to
// re-confirm, then alive suspects past their backoff, longest-waiting first;
// and every target says since when it has been quiet.
func TestTargetsPriority(t *testing.T) {
	e, inv, pr, c := newTest()
	ctx := context.Background()
	pr.verdicts[4] = probe.Alive
	inv.sockets[7] = []inventory.Socket{
		idleSocket(1, 1, 2*time.Minute), // alive, probed first
		idleSocket(2, 2, 2*time.Minute), // reset: a ghost
		idleSocket(4, 4, 2*time.Minute), // alive, probed a minute later
	}
	e.Scan(ctx)
	e.Probe(ctx, e.Targets()[:1]) // 1 only
	c.t = c.t.Add(time.Minute)
	e.Scan(ctx)
	e.Probe(ctx, e.Targets()) // 2 and 4
	// A new suspect appears with the higher cookie 9.
	inv.sockets[7] = append(inv.sockets[7], idleSocket(9, 1, 2*time.Minute))
	c.t = c.t.Add(10 * time.Minute)
	e.Scan(ctx)
	ts := e.Targets()
	// The ghost to re-confirm first, then the new suspect, then the alive
	// ones, longest-waiting first.
	if diff := cmp.Diff([]uint64{2, 9, 1, 4}, cookies(ts)); diff != "" {
		t.Errorf("target order (-want +got):\n%s", diff)
	}
	for _, tg := range ts {
		if want := c.t.Add(-2 * time.Minute); !tg.QuietSince.Equal(want) {
			t.Errorf("cookie %d: QuietSince %v, want %v (scan time minus idle)", tg.Cookie, tg.QuietSince, want)
		}
	}
}

func TestTargetsBounded(t *testing.T) {
	inv := &fakeInv{ns: []inventory.Namespace{{Inode: 7, Name: "srv"}}, sockets: map[uint64][]inventory.Socket{}}
	// More than twice the bound, the oldest sockets last: the selection
	// must keep the best through its compactions.
	for i := 2*MaxTargets + 1000; i > 0; i-- {
		inv.sockets[7] = append(inv.sockets[7], idleSocket(uint64(i), 1, 2*time.Minute))
	}
	e := New(inv, &fakeProber{}, nil, Options{Tracker: tracker.Config{Idle: time.Minute}})
	e.Scan(context.Background())
	ts := e.Targets()
	if len(ts) != MaxTargets || ts[0].Cookie != 1 || ts[len(ts)-1].Cookie != MaxTargets {
		t.Errorf("%d targets from cookie %d to %d; want the %d oldest", len(ts), ts[0].Cookie, ts[len(ts)-1].Cookie, MaxTargets)
	}
}

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

// sameOwner says every socket belongs to one process.
type sameOwner struct{ asked int }

func (s *sameOwner) Each(_ uint64, inodes []uint32, fn func(uint32, inventory.Owner)) {
	for i, o := range s.lookup(inodes) {
		fn(i, o)
	}
}

func (s *sameOwner) lookup(inodes []uint32) map[uint32]inventory.Owner {
	s.asked += len(inodes)
	m := map[uint32]inventory.Owner{}
	for _, i := range inodes {
		if i%2 == 0 {
			m[i] = inventory.Owner{PID: 42, Comm: "pool", Unit: "pool.service"}
		}
	}
	return m
}

func TestOwnersSharedAndCached(t *testing.T) {
	inv := &fakeInv{ns: []inventory.Namespace{{Inode: 7, Name: "srv"}}, sockets: map[uint64][]inventory.Socket{}}
	for i := range 100 {
		inv.sockets[7] = append(inv.sockets[7], idleSocket(uint64(i+1), 1, 2*time.Minute))
	}
	ow := &sameOwner{}
	e := New(inv, nil, ow, Options{Tracker: tracker.Config{Idle: time.Minute}})
	for range 3 {
		e.Scan(context.Background())
		e.Snapshot()
	}
	if ow.asked != 100 || len(e.ownerTab) != 1 || len(e.ownerOf) != 100 {
		t.Errorf("asked %d inodes, %d owners in the table, %d cached; want 100, 1, 100", ow.asked, len(e.ownerTab), len(e.ownerOf))
	}
	doc := e.Document()
	if s := doc.Sessions[1]; s.PID != 42 || s.Comm != "pool" || s.Unit != "pool.service" {
		t.Errorf("session of inode 2: %+v, want pool [42]", s)
	}
	if s := doc.Sessions[0]; s.PID != 0 || s.Comm != "" {
		t.Errorf("session of inode 1 (nobody holds it): %+v", s)
	}
}

func TestVerdictPacking(t *testing.T) {
	yes, no := true, false
	for _, r := range []probe.Result{
		{Verdict: probe.Alive, Mode: probe.InWindow, Sent: 1, Replies: 1, RTT: 250 * time.Microsecond},
		{Verdict: probe.Silent, Mode: probe.Blind, Sent: 3, HostReachable: &yes, HostHint: probe.HostHintReachable, Confirmed: true},
		{Verdict: probe.Unreachable, Mode: probe.InWindow, Sent: 2, Replies: 1, HostReachable: &no, HostHint: probe.HostHintUnreachable, Confirmed: true},
		{Verdict: probe.Silent, Mode: probe.InWindow, Sent: 3, HostHint: probe.HostHintNAT, NAT: probe.NATDNAT, Confirmed: true},
		{Verdict: probe.Silent, Mode: probe.InWindow, Sent: 3, HostHint: probe.HostHintShared, Confirmed: true},
		{Verdict: probe.Reset, Mode: probe.InWindow, Sent: 1, Replies: 1, ClosedLocal: true, Confirmed: true},
		{Verdict: probe.Reset, Mode: probe.InWindow, Sent: 1, Replies: 1, Guarded: true, Confirmed: true},
		{Verdict: probe.Unprobed, Mode: probe.InWindow, Unprobeable: probe.UnprobeableTCPMD5},
		{Verdict: probe.Unprobed, Mode: probe.Blind, Unprobeable: probe.UnprobeableTCPAO},
		{Verdict: probe.Alive, Mode: probe.InWindow, Sent: 2, Replies: 1, RTT: time.Millisecond, NAT: probe.NATDNAT},
		{Verdict: probe.Reset, Mode: probe.InWindow, Sent: 1, Replies: 1, ClosedLocal: true, Confirmed: true, NAT: probe.NATRedirect + "+" + probe.NATSNAT},
		{Verdict: probe.Silent, Mode: probe.InWindow, Sent: 3, Uncertain: probe.UncertainInterference},
		{Verdict: probe.Unreachable, Mode: probe.InWindow, Sent: 3, Replies: 1, Uncertain: probe.UncertainCaptureLost, NAT: probe.NATDNAT},
	} {
		v := packResult(r, 5, epoch.Zero)
		if diff := cmp.Diff(r, v.result()); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
	if v := packResult(probe.Result{Verdict: probe.Alive, Sent: 1000}, 0, 0); v.sent != 255 {
		t.Errorf("1000 probes packed as %d, want 255", v.sent)
	}
	e := New(&fakeInv{}, nil, nil, Options{})
	now := time.Now()
	if got := e.epoch.Time(e.epoch.Stamp(now)); !got.Equal(now) || e.epoch.Time(e.epoch.Stamp(time.Time{})) != (time.Time{}) {
		t.Errorf("stamps: %v from %v", got, now)
	}
}

// TestDueHead: the head of a batch is checked a chunk at a time; targets no
// longer due are dropped from it, the unchecked tail is kept.
func TestDueHead(t *testing.T) {
	e, inv, _, _ := newTest()
	for i := range 10 {
		inv.sockets[7] = append(inv.sockets[7], idleSocket(uint64(i+1), 1, 2*time.Minute))
	}
	e.Scan(context.Background())
	batch := e.Targets()
	e.Probe(context.Background(), []probe.Target{batch[1], batch[2], batch[4]}) // no longer due
	rest, n := e.DueHead(batch, 3)
	if n != 3 || !cmp.Equal(cookies(rest[:n]), []uint64{1, 4, 6}) {
		t.Errorf("due head %v (n=%d), want [1 4 6]", cookies(rest[:n]), n)
	}
	if !cmp.Equal(cookies(rest[n:]), []uint64{7, 8, 9, 10}) {
		t.Errorf("tail %v, want [7 8 9 10] unchecked", cookies(rest[n:]))
	}
	if rest, n = e.DueHead(rest[n:n], 3); n != 0 || len(rest) != 0 {
		t.Errorf("empty batch: %d due of %d", n, len(rest))
	}
}

func TestVerdictTagRoundTrip(t *testing.T) {
	for _, v := range []verdictState{
		{at: 5, ghostSince: epoch.Zero, rtt: 250 * time.Microsecond, verdict: 1, mode: 1, sent: 1, replies: 1, host: -1, confirmed: true},
		{at: -7, ghostSince: 3, verdict: 3, mode: 2, sent: 3, host: 1, closed: true, confirmed: true},
		{at: 1 << 50, ghostSince: epoch.Zero, verdict: 4, mode: 1, sent: 255, replies: 2, host: 0},
		{at: 9, ghostSince: epoch.Zero, verdict: 0, mode: 2, host: -1, why: 2},
		{at: 9, ghostSince: epoch.Zero, verdict: 1, mode: 1, sent: 1, replies: 1, host: -1, closed: true, nat: uint8(len(packedNATs) - 1)},
		{at: 9, ghostSince: epoch.Zero, verdict: 2, mode: 1, sent: 1, replies: 1, host: -1, guarded: true, confirmed: true, nat: uint8(len(packedNATs) - 1)},
		{at: 9, ghostSince: epoch.Zero, verdict: 3, mode: 1, sent: 3, host: 1, confirmed: false, uncertain: uint8(len(packedUncertain) - 1)},
		{at: 9, ghostSince: 4, verdict: 3, mode: 1, sent: 3, host: -1, confirmed: true, uncertain: 0},
	} {
		got, ok := unpackVerdict(packVerdict(&v))
		if !ok || got != v {
			t.Errorf("round trip of %+v: %+v, %v", v, got, ok)
		}
	}
	if _, ok := unpackVerdict(tracker.Tag{}); ok {
		t.Error("the zero tag unpacked as a verdict")
	}
	bad := packVerdict(&verdictState{why: 2})
	bad[25] = 0xf1 // an unprobeable reason this build does not know
	if _, ok := unpackVerdict(bad); ok {
		t.Error("an unknown unprobeable index unpacked")
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
