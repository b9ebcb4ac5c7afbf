package engine

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// fakeInv serves a fixed socket table per namespace.
type fakeInv struct {
	ns      []inventory.Namespace
	sockets map[uint64][]inventory.Socket
	errs    map[uint64]error
}

func (f *fakeInv) Scan(_ context.Context, _ inventory.StateMask, fn func(*inventory.Namespace, *inventory.Socket) error) []inventory.NamespaceResult {
	var out []inventory.NamespaceResult
	for i := range f.ns {
		ns := &f.ns[i]
		r := inventory.NamespaceResult{Namespace: *ns, Err: f.errs[ns.Inode]}
		if r.Err == nil {
			socks := f.sockets[ns.Inode]
			for j := range socks {
				s := socks[j] // a copy per socket, as the kernel's dump is
				s.Netns = ns.Inode
				_ = fn(ns, &s)
				r.Sockets++
			}
		}
		out = append(out, r)
	}
	return out
}

// fakeProber answers by remote port.
type fakeProber struct {
	verdicts    map[uint16]probe.Verdict
	unprobeable map[uint16]string // ports whose sockets cannot be probed, and why
	guarded     map[uint16]bool   // ports whose probes went out behind the reset guard
	probed      []probe.Target
}

func (f *fakeProber) ProbeAll(_ context.Context, ts []probe.Target) []probe.Result {
	out := make([]probe.Result, len(ts))
	for i, t := range ts {
		f.probed = append(f.probed, t)
		if why := f.unprobeable[t.Remote.Port()]; why != "" {
			out[i] = probe.Result{Verdict: probe.Unprobed, Mode: probe.InWindow, Unprobeable: why}
			continue
		}
		v := f.verdicts[t.Remote.Port()]
		out[i] = probe.Result{Verdict: v, Mode: probe.InWindow, Sent: 3, Confirmed: v != probe.Alive, Guarded: f.guarded[t.Remote.Port()]}
		if v == probe.Alive {
			out[i].Sent, out[i].Replies, out[i].RTT = 1, 1, time.Millisecond
		}
	}
	return out
}

func (f *fakeProber) Mode() (probe.Mode, string) { return probe.InWindow, "test" }

type fakeOwners struct{ calls int }

func (f *fakeOwners) Each(_ uint64, inodes []uint32, fn func(uint32, inventory.Owner)) {
	for i, o := range f.lookup(inodes) {
		fn(i, o)
	}
}

func (f *fakeOwners) lookup(inodes []uint32) map[uint32]inventory.Owner {
	f.calls++
	m := map[uint32]inventory.Owner{}
	for _, i := range inodes {
		m[i] = inventory.Owner{PID: int(i), Comm: "app", Unit: "app.service"}
	}
	return m
}

func idleSocket(cookie uint64, rport uint16, idle time.Duration) inventory.Socket {
	s := inventory.Socket{
		Family: inventory.FamilyInet, State: inventory.StateEstablished, Cookie: cookie, Inode: uint32(cookie),
		Local:  netip.MustParseAddrPort("198.51.100.2:5432"),
		Remote: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), rport),
	}
	s.Info.Len = 280
	s.Info.LastDataRecv = uint32(idle.Milliseconds())
	s.Info.LastDataSent = uint32(idle.Milliseconds())
	s.Info.LastAckRecv = uint32(idle.Milliseconds()) // nothing, not even an ACK, since
	return s
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTest() (*Engine, *fakeInv, *fakeProber, *clock) {
	inv := &fakeInv{
		ns:      []inventory.Namespace{{Inode: 7, Name: "srv", Path: "/run/netns/srv", Kind: inventory.KindNamed}},
		sockets: map[uint64][]inventory.Socket{},
	}
	pr := &fakeProber{verdicts: map[uint16]probe.Verdict{1: probe.Alive, 2: probe.Reset, 3: probe.Silent}}
	c := &clock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	e := New(inv, pr, &fakeOwners{}, Options{
		Tracker: tracker.Config{Idle: time.Minute}, Backoff: 5 * time.Minute, Reconfirm: time.Minute, Now: c.now,
	})
	return e, inv, pr, c
}

func TestEngineVerdictsAndBackoff(t *testing.T) {
	e, inv, pr, c := newTest()
	ctx := context.Background()
	inv.sockets[7] = []inventory.Socket{
		idleSocket(1, 1, 2*time.Minute),  // alive
		idleSocket(2, 2, 2*time.Minute),  // reset
		idleSocket(3, 3, 2*time.Minute),  // silent
		idleSocket(4, 4, 10*time.Second), // not idle yet: no suspect
	}
	e.Scan(ctx)
	targets := e.Targets()
	if len(targets) != 3 {
		t.Fatalf("targets = %d, want 3: %+v", len(targets), targets)
	}
	if targets[0].NetnsPath != "/run/netns/srv" || targets[0].NetnsInode != 7 {
		t.Errorf("target namespace = %q %d", targets[0].NetnsPath, targets[0].NetnsInode)
	}
	e.Probe(ctx, targets)
	snap, cands := e.Snapshot()

	got := map[uint64]string{}
	for _, s := range e.Document().Sessions {
		v := s.Verdict
		if s.Ghost {
			v += "+ghost"
		}
		got[s.Cookie] = v
	}
	want := map[uint64]string{1: "alive", 2: "reset+ghost", 3: "silent+ghost"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
	if len(cands) != 2 {
		t.Errorf("kill candidates = %d, want the 2 ghosts", len(cands))
	}
	// The snapshot carries counts, and the engine as its session source.
	wantSum := []exporter.SessionSummary{{
		Netns: "srv", Sessions: 3,
		Ghosts:   map[exporter.GhostKind]int{{Family: "inet", Verdict: "reset"}: 1, {Family: "inet", Verdict: "silent"}: 1},
		Suspects: map[tracker.Reason]int{tracker.ReasonIdle: 3},
	}}
	if diff := cmp.Diff(wantSum, snap.Summary); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	if snap.Doc.Sessions != nil || snap.Source != e {
		t.Errorf("snapshot lists %d sessions and has source %v; want none, and the engine", len(snap.Doc.Sessions), snap.Source)
	}
	s0 := e.Document().Sessions[0]
	if s0.Netns != "srv" || s0.Local != "198.51.100.2:5432" || s0.Remote != "192.0.2.2:1" || s0.Comm != "app" || s0.PID != 1 || s0.IdleSeconds != 120 || s0.RTTSeconds == nil {
		t.Errorf("session 0 = %+v", s0)
	}

	// Within the backoff the alive one is not probed again; ghosts are
	// re-confirmed after Reconfirm.
	c.t = c.t.Add(30 * time.Second)
	e.Scan(ctx)
	if n := len(e.Targets()); n != 0 {
		t.Errorf("30s later: %d targets, want 0", n)
	}
	c.t = c.t.Add(45 * time.Second)
	e.Scan(ctx)
	if got := cookies(e.Targets()); !cmp.Equal(got, []uint64{2, 3}) {
		t.Errorf("after reconfirm interval: targets %v, want [2 3]", got)
	}
	c.t = c.t.Add(5 * time.Minute)
	e.Scan(ctx)
	// Ghosts to re-confirm come before alive suspects to re-probe.
	if got := cookies(e.Targets()); !cmp.Equal(got, []uint64{2, 3, 1}) {
		t.Errorf("after backoff: targets %v, want [2 3 1]", got)
	}
	_ = pr
}

// TestEngineRecordsUnprobeable: a socket the prober refuses to probe (TCP-MD5)
// is recorded as unprobed with its reason, is never a ghost or a kill
// candidate, and waits the backoff like an alive one before it is tried again.
func TestEngineRecordsUnprobeable(t *testing.T) {
	e, inv, pr, c := newTest()
	ctx := context.Background()
	pr.unprobeable = map[uint16]string{5: probe.UnprobeableTCPMD5}
	inv.sockets[7] = []inventory.Socket{idleSocket(1, 5, 2*time.Minute), idleSocket(2, 3, 2*time.Minute)}
	e.Scan(ctx)
	e.Probe(ctx, e.Targets())
	_, cands := e.Snapshot()
	got := map[uint64][3]any{}
	for _, s := range e.Document().Sessions {
		got[s.Cookie] = [3]any{s.VerdictText(), s.Unprobeable, s.Ghost}
	}
	want := map[uint64][3]any{1: {"unprobed (tcp-md5)", "tcp_md5", false}, 2: {"silent", "", true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sessions (-want +got):\n%s", diff)
	}
	if len(cands) != 1 || cands[0].Socket.Cookie != 2 {
		t.Errorf("kill candidates %+v, want only the silent one", cands)
	}
	c.t = c.t.Add(2 * time.Minute) // past Reconfirm, within Backoff
	e.Scan(ctx)
	if got := cookies(e.Targets()); !cmp.Equal(got, []uint64{2}) {
		t.Errorf("within the backoff: targets %v, want [2]", got)
	}
}

func cookies(ts []probe.Target) []uint64 {
	var out []uint64
	for _, t := range ts {
		out = append(out, t.Cookie)
	}
	return out
}

// newGhostTest is newTest with one socket (cookie 2, whose peer resets)
// scanned and probed: a confirmed ghost.
func newGhostTest() (*Engine, *fakeInv, *clock) {
	e, inv, _, c := newTest()
	ctx := context.Background()
	inv.sockets[7] = []inventory.Socket{idleSocket(2, 2, 2*time.Minute)}
	e.Scan(ctx)
	e.Probe(ctx, e.Targets())
	return e, inv, c
}

func TestEngineGhostAgeAndGone(t *testing.T) {
	e, inv, c := newGhostTest()
	ctx := context.Background()
	c.t = c.t.Add(90 * time.Second)
	e.Scan(ctx)
	e.Probe(ctx, e.Targets()) // re-confirmed: the age keeps counting from the first confirmation
	snap, _ := e.Snapshot()
	if snap.Summary[0].OldestGhostSeconds != 90 {
		t.Errorf("oldest ghost in the summary: %v s, want 90", snap.Summary[0].OldestGhostSeconds)
	}
	if len(e.Document().Sessions) != 1 || e.Document().Sessions[0].GhostSeconds != 90 {
		t.Fatalf("sessions = %+v, want one ghost aged 90s", e.Document().Sessions)
	}
	// The socket leaves the table: gone after two complete dumps without it.
	inv.sockets[7] = nil
	e.Scan(ctx)
	e.Scan(ctx)
	_, cands := e.Snapshot()
	if len(e.Document().Sessions) != 0 || len(cands) != 0 {
		t.Errorf("after the socket left: %d sessions, %d candidates", len(e.Document().Sessions), len(cands))
	}
	if _, ok := e.verdict(inventory.Key{Netns: 7, Cookie: 2}); ok {
		t.Error("a verdict outlived its socket")
	}
}

func TestEngineNeverProbesOutsideInventory(t *testing.T) {
	e, inv, _, _ := newTest()
	ctx := context.Background()
	zw := idleSocket(5, 5, 0)
	zw.Timer = inventory.TimerZeroWindow
	cw := idleSocket(6, 6, 0)
	cw.State = inventory.StateCloseWait
	inv.sockets[7] = []inventory.Socket{zw, cw}
	e.Scan(ctx)
	if n := len(e.Targets()); n != 0 {
		t.Errorf("zero-window and CLOSE_WAIT sockets were targeted: %d", n)
	}
	// A failing namespace keeps its sockets (not gone until confirmed) but
	// the document says why.
	inv.errs = map[uint64]error{7: context.DeadlineExceeded}
	e.Scan(ctx)
	snap, _ := e.Snapshot()
	if len(snap.Doc.Namespaces) != 1 || snap.Doc.Namespaces[0].Error == "" || snap.Doc.Namespaces[0].OK() {
		t.Errorf("namespace status = %+v", snap.Doc.Namespaces)
	}
	// Record ignores results for sockets that are not tracked.
	e.Record([]probe.Target{{NetnsInode: 7, Cookie: 99}}, []probe.Result{{Verdict: probe.Reset, Confirmed: true}})
	if _, ok := e.verdict(inventory.Key{Netns: 7, Cookie: 99}); ok {
		t.Error("a verdict was recorded for a socket outside the inventory")
	}
}

func TestEngineAllAndCounts(t *testing.T) {
	e, inv, _, _ := newTest()
	e.opts.All = true
	inv.sockets[7] = []inventory.Socket{idleSocket(1, 1, time.Second), idleSocket(2, 2, time.Second)}
	e.Scan(context.Background())
	snap, _ := e.Snapshot()
	if len(e.Document().Sessions) != 2 {
		t.Errorf("--all lists %d sessions, want 2", len(e.Document().Sessions))
	}
	want := []exporterCount{{"srv", "inet", "ESTABLISHED", 2}}
	var got []exporterCount
	for _, c := range snap.Sockets {
		got = append(got, exporterCount{c.Netns, c.Family, c.State, c.Count})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("socket counts (-want +got):\n%s", diff)
	}
}

type exporterCount struct {
	Netns, Family, State string
	Count                int
}

// TestFormatAddr: as net.JoinHostPort writes them, for every kind of
// address, the zero one included, alone or as a socket's pair.
func TestFormatAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:80":          "192.0.2.1:80",
		"[2001:db8::2]:51234":   "[2001:db8::2]:51234",
		"[::ffff:192.0.2.1]:80": "[::ffff:192.0.2.1]:80",
		"[fe80::1%eth0]:0":      "[fe80::1%eth0]:0",
		"[fe80::1%a-long-zone-name-that-overflows-sixty-four-bytes-of-stack-buffer]:65535": "[fe80::1%a-long-zone-name-that-overflows-sixty-four-bytes-of-stack-buffer]:65535",
		"0.0.0.0:0": "0.0.0.0:0",
	} {
		ap := netip.MustParseAddrPort(in)
		if got := FormatAddr(ap); got != want || got != net.JoinHostPort(ap.Addr().String(), strconv.Itoa(int(ap.Port()))) {
			t.Errorf("FormatAddr(%s) = %s, want %s", in, got, want)
		}
		other := netip.MustParseAddrPort("[2001:db8::7]:443")
		if l, r := formatAddrs(ap, other); l != want || r != "[2001:db8::7]:443" {
			t.Errorf("formatAddrs(%s, %s) = %s, %s", in, other, l, r)
		}
		if l, r := formatAddrs(other, ap); l != "[2001:db8::7]:443" || r != want {
			t.Errorf("formatAddrs(%s, %s) = %s, %s", other, in, l, r)
		}
	}
	var zero netip.AddrPort
	if got, want := FormatAddr(zero), net.JoinHostPort(zero.Addr().String(), "0"); got != want {
		t.Errorf("FormatAddr(zero) = %q, want %q", got, want)
	}
}

func TestEngineKilledSessionsStayVisible(t *testing.T) {
	e, inv, c := newGhostTest()
	ctx := context.Background()
	e.MarkKilled(inventory.Key{Netns: 7, Cookie: 2})
	inv.sockets[7] = nil // SOCK_DESTROY: the socket left the table
	e.Scan(ctx)
	e.Scan(ctx)
	snap, cands := e.Snapshot()
	if len(cands) != 0 {
		t.Errorf("a killed socket is a kill candidate again: %+v", cands)
	}
	if len(snap.Summary) != 1 || snap.Summary[0].Sessions != 1 || snap.Summary[0].GhostCount() != 0 || len(snap.Summary[0].Suspects) != 0 {
		t.Errorf("summary with one killed session: %+v, want 1 session, no ghost, no suspect", snap.Summary)
	}
	if len(e.Document().Sessions) != 1 {
		t.Fatalf("sessions = %+v, want the killed one", e.Document().Sessions)
	}
	if s := e.Document().Sessions[0]; !s.Killed || s.Ghost || s.State != "CLOSE" || s.Verdict != "reset" {
		t.Errorf("killed session = %+v, want killed, not a ghost, CLOSE, verdict kept", s)
	}
	c.t = c.t.Add(KilledRetention + time.Second)
	e.Scan(ctx)
	if len(e.Document().Sessions) != 0 {
		t.Errorf("killed session kept past the retention: %+v", e.Document().Sessions)
	}
}

func TestEngineStillDue(t *testing.T) {
	e, inv, _, _ := newTest()
	ctx := context.Background()
	inv.sockets[7] = []inventory.Socket{idleSocket(1, 1, 2*time.Minute), idleSocket(2, 2, 2*time.Minute), idleSocket(3, 3, 2*time.Minute)}
	e.Scan(ctx)
	batch := e.Targets()
	e.Probe(ctx, batch[:1]) // the first chunk is answered
	inv.sockets[7] = inv.sockets[7][:2]
	e.Scan(ctx)
	e.Scan(ctx) // socket 3 left the table
	if got := cookies(e.StillDue(batch)); !cmp.Equal(got, []uint64{2}) {
		t.Errorf("StillDue = %v, want [2]: 1 was just probed, 3 is gone", got)
	}
}

// A scan that moves from namespace to namespace reports progress (the
// daemon pets systemd's watchdog with it), at most once a second.
func TestScanReportsProgress(t *testing.T) {
	inv := &fakeInv{sockets: map[uint64][]inventory.Socket{}}
	for i := range uint64(6) {
		inv.ns = append(inv.ns, inventory.Namespace{Inode: 10 + i, Name: fmt.Sprint("ns", i)})
		inv.sockets[10+i] = []inventory.Socket{idleSocket(1, 1, time.Second)}
	}
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	calls := 0
	now := func() time.Time { calls++; return t0.Add(time.Duration(calls) * 600 * time.Millisecond) }
	e := New(inv, nil, nil, Options{Tracker: tracker.Config{Idle: time.Minute}, Now: now})
	pets := 0
	e.SetProgress(func() { pets++ })
	e.Scan(context.Background())
	// Six namespaces, one socket each, the clock read once per namespace
	// (its first socket's dump time) at 600 ms a read: a pet every second
	// namespace, never two within a second.
	if pets < 2 || pets > 3 {
		t.Errorf("%d progress calls over a scan of 6 namespaces (3.6 s), want 2 or 3", pets)
	}
}
