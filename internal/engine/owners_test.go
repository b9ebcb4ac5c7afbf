package engine

import (
	"context"
	"testing"
	"time"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/tracker"
	"github.com/google/go-cmp/cmp"
)

// flakyOwners finds nobody until found is set, then everybody.
type flakyOwners struct {
	found bool
	asked []uint32
}

func (f *flakyOwners) Each(_ uint64, inodes []uint32, fn func(uint32, inventory.Owner)) {
	for i, o := range f.lookup(inodes) {
		fn(i, o)
	}
}

func (f *flakyOwners) lookup(inodes []uint32) map[uint32]inventory.Owner {
	f.asked = append(f.asked, inodes...)
	m := map[uint32]inventory.Owner{}
	if f.found {
		for _, i := range inodes {
			m[i] = inventory.Owner{PID: 4242, Comm: "sshd", Unit: "ssh.service"}
		}
	}
	return m
}

// An owner lookup that found nobody is not cached for good: after ownerRetry
// the owner is looked for again, so a deny rule on a unit sees it.
func TestOwnerMissIsRetried(t *testing.T) {
	inv := &fakeInv{
		ns:      []inventory.Namespace{{Inode: 7, Name: "srv", Path: "/run/netns/srv", Kind: inventory.KindNamed}},
		sockets: map[uint64][]inventory.Socket{7: {idleSocket(1, 1, 2*time.Minute)}},
	}
	owners := &flakyOwners{}
	c := &clock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	e := New(inv, &fakeProber{}, owners, Options{Tracker: tracker.Config{Idle: time.Minute}, Now: c.now})
	ctx := context.Background()
	comm := func() string {
		e.Snapshot()
		for _, s := range e.Document().Sessions {
			return s.Comm
		}
		return "<no session>"
	}
	e.Scan(ctx)
	if got := comm(); got != "" {
		t.Fatalf("first lookup: comm %q, want none (the owner is not found yet)", got)
	}
	owners.found = true
	c.t = c.t.Add(ownerRetry / 2)
	e.Scan(ctx)
	if got := comm(); got != "" {
		t.Fatalf("before ownerRetry: comm %q, want the cached miss", got)
	}
	c.t = c.t.Add(ownerRetry / 2)
	e.Scan(ctx)
	if got := comm(); got != "sshd" {
		t.Fatalf("after ownerRetry: comm %q, want sshd (looked up again); lookups %v", got, owners.asked)
	}
	n := len(owners.asked)
	c.t = c.t.Add(10 * ownerRetry)
	e.Scan(ctx)
	if got := comm(); got != "sshd" || len(owners.asked) != n {
		t.Errorf("later: comm %q, lookups %v; want sshd, found owner not looked up again", got, owners.asked)
	}
}

// hintOwners records the namespace hint of each walk.
type hintOwners struct{ hints []uint64 }

func (h *hintOwners) Each(netns uint64, inodes []uint32, fn func(uint32, inventory.Owner)) {
	h.hints = append(h.hints, netns)
}

// TestOwnersNamespaceHint: a walk for sockets of one namespace reads that
// namespace's processes first (the hint); one for sockets of several has none.
func TestOwnersNamespaceHint(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	inv := &fakeInv{
		ns:      []inventory.Namespace{{Inode: 7, Name: "a"}, {Inode: 8, Name: "b"}},
		sockets: map[uint64][]inventory.Socket{7: {idleSocket(1, 1, 2*time.Minute)}},
	}
	h := &hintOwners{}
	e := New(inv, nil, h, Options{Tracker: tracker.Config{Idle: time.Minute}, Now: c.now})
	e.Scan(context.Background())
	e.Snapshot()
	inv.sockets[8] = []inventory.Socket{idleSocket(2, 1, 2*time.Minute)}
	inv.sockets[7] = append(inv.sockets[7], idleSocket(3, 1, 2*time.Minute))
	e.Scan(context.Background())
	e.Snapshot()
	if diff := cmp.Diff([]uint64{7, 0}, h.hints); diff != "" {
		t.Errorf("walk hints (-want +got):\n%s", diff)
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

// TestListedOwnersOnRequest: scan --all names the processes of suspects
// only, unless Processes asks for every listed socket's; a suspect's owner
// is the same either way.
func TestListedOwnersOnRequest(t *testing.T) {
	for _, processes := range []bool{false, true} {
		inv := &fakeInv{
			ns: []inventory.Namespace{{Inode: 7, Name: "srv"}},
			sockets: map[uint64][]inventory.Socket{7: {
				idleSocket(1, 1, 2*time.Minute), // a suspect
				idleSocket(2, 2, time.Second),   // healthy
				idleSocket(3, 3, time.Second),   // healthy
			}},
		}
		ow := &flakyOwners{found: true}
		e := New(inv, nil, ow, Options{Tracker: tracker.Config{Idle: time.Minute}, All: true, Processes: processes})
		e.Scan(context.Background())
		e.Snapshot()
		wantAsked := []uint32{1}
		if processes {
			wantAsked = []uint32{1, 2, 3}
		}
		if diff := cmp.Diff(wantAsked, ow.asked); diff != "" {
			t.Errorf("processes=%v: inodes looked up (-want +got):\n%s", processes, diff)
		}
		doc := e.Document()
		if len(doc.Sessions) != 3 {
			t.Fatalf("processes=%v: %d sessions, want 3", processes, len(doc.Sessions))
		}
		for _, s := range doc.Sessions {
			named := processes || s.Cookie == 1
			if got := s.PID == 4242 && s.Comm == "sshd" && s.Unit == "ssh.service"; got != named {
				t.Errorf("processes=%v: cookie %d: pid %d comm %q unit %q; want named: %v", processes, s.Cookie, s.PID, s.Comm, s.Unit, named)
			}
			if !named && (s.PID != 0 || s.Comm != "" || s.Unit != "") {
				t.Errorf("processes=%v: cookie %d: owner %d %q %q, want none", processes, s.Cookie, s.PID, s.Comm, s.Unit)
			}
		}
	}
}
