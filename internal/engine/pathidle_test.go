package engine

import (
	"context"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/pathidle"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// cookieProber answers by socket cookie, confirmed as a real prober would.
type cookieProber map[uint64]probe.Verdict

func (f cookieProber) ProbeAll(_ context.Context, ts []probe.Target) []probe.Result {
	out := make([]probe.Result, len(ts))
	for i, t := range ts {
		v := f[t.Cookie]
		out[i] = probe.Result{Verdict: v, Mode: probe.InWindow, Sent: 3, Confirmed: true}
	}
	return out
}

func (f cookieProber) Mode() (probe.Mode, string) { return probe.InWindow, "test" }

// newPathTest returns an engine over one namespace (inode 7) whose
// sockets the test sets, probed by a cookieProber, on a test clock; idle
// threshold a minute.
func newPathTest() (*Engine, *fakeInv, cookieProber, *clock) {
	inv := &fakeInv{
		ns:      []inventory.Namespace{{Inode: 7, Name: "srv", Path: "/run/netns/srv", Kind: inventory.KindNamed}},
		sockets: map[uint64][]inventory.Socket{},
	}
	pr := cookieProber{}
	c := &clock{t: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
	e := New(inv, pr, &fakeOwners{}, Options{
		Tracker: tracker.Config{Idle: time.Minute}, Backoff: 5 * time.Minute, Reconfirm: time.Minute, Now: c.now,
	})
	return e, inv, pr, c
}

// addIdle adds a socket of namespace 7 from local to remote, idle for age
// (its data and its last ACK received), which pr answers alive up to 100 s
// idle and silent beyond.
func addIdle(inv *fakeInv, pr cookieProber, cookie uint64, local, remote netip.AddrPort, age time.Duration) {
	sk := idleSocket(cookie, remote.Port(), age)
	sk.Local, sk.Remote = local, remote
	sk.Info.LastAckRecv = uint32(age.Milliseconds())
	inv.sockets[7] = append(inv.sockets[7], sk)
	pr[cookie] = probe.Alive
	if age > 100*time.Second {
		pr[cookie] = probe.Silent
	}
}

// TestPathEstimateFromProbes: idle connections to one destination, proved
// alive up to 90 s idle and dead from 130 s, give the estimate (90 s, 130 s];
// a ghost re-confirmed later is not counted again, and the owner's comm
// picks the advice.
func TestPathEstimateFromProbes(t *testing.T) {
	e, inv, pr, c := newPathTest()
	ages := map[uint64]time.Duration{1: 70 * time.Second, 2: 80 * time.Second, 3: 90 * time.Second, 4: 130 * time.Second, 5: 140 * time.Second}
	for cookie, age := range ages {
		// The local end is the client: the destination is 198.51.100.0/24:5432.
		addIdle(inv, pr, cookie, netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), 40000+uint16(cookie)), netip.MustParseAddrPort("198.51.100.2:5432"), age)
	}
	// One more socket whose last ACK is recent (a keepalive answered 5 s
	// ago): the path saw it 5 s ago, whatever its data says.
	fresh := idleSocket(6, 40006, 200*time.Second)
	fresh.Local, fresh.Remote = fresh.Remote, fresh.Local
	fresh.Info.LastAckRecv = 5000
	inv.sockets[7] = append(inv.sockets[7], fresh)
	pr[6] = probe.Alive

	ctx := context.Background()
	e.Scan(ctx)
	e.Snapshot() // resolves owners, as the daemon does before probing
	e.Probe(ctx, e.Targets())
	ps := e.Paths()
	if len(ps) != 1 {
		t.Fatalf("paths = %+v, want one destination", ps)
	}
	p := ps[0]
	if p.Dest.String() != "198.51.100.0/24:5432" || !p.Ready || p.Lower != 90*time.Second || p.Upper != 130*time.Second || p.Alive != 4 || p.Dead != 2 {
		t.Errorf("estimate = %s (%+v), want alive up to 90 s (4 samples), dead from 130 s (2)", p.Text(), p)
	}
	if len(p.Advice) != 1 || p.Advice[0].Owner != "sysctl" {
		t.Errorf("advice = %+v, want the sysctl fallback for comm %q", p.Advice, p.Owners)
	}
	// The ghosts are re-confirmed a minute later: still 2 dead samples.
	c.t = c.t.Add(2 * time.Minute)
	for i := range inv.sockets[7] {
		sk := &inv.sockets[7][i]
		sk.Info.LastDataRecv += 120000
		sk.Info.LastDataSent += 120000
		sk.Info.LastAckRecv += 120000
	}
	e.Scan(ctx)
	e.Probe(ctx, e.Targets())
	if p := e.Paths()[0]; p.Dead != 2 {
		t.Errorf("after re-confirmation: %d dead samples, want 2 (one per socket)", p.Dead)
	}
}

func TestAccepted(t *testing.T) {
	listener := func(netns uint64, fam uint8, local string) inventory.Socket {
		return inventory.Socket{Netns: netns, Family: fam, State: inventory.StateListen, Local: netip.MustParseAddrPort(local)}
	}
	lis := listeners{}
	for _, sk := range []inventory.Socket{
		listener(7, inventory.FamilyInet, "0.0.0.0:5432"),
		listener(7, inventory.FamilyInet6, "[::]:443"),
		listener(7, inventory.FamilyInet, "198.51.100.2:6379"),
		listener(8, inventory.FamilyInet, "0.0.0.0:8080"),
		{Netns: 7, Family: inventory.FamilyInet, State: inventory.StateEstablished, Local: netip.MustParseAddrPort("198.51.100.2:9000")},
	} {
		lis.add(&sk)
	}
	for _, tc := range []struct {
		name  string
		netns uint64
		fam   uint8
		state inventory.State
		local string
		want  bool
	}{
		{"a wildcard listener's port", 7, inventory.FamilyInet, inventory.StateEstablished, "198.51.100.2:5432", true},
		{"an address listener's", 7, inventory.FamilyInet, inventory.StateEstablished, "198.51.100.2:6379", true},
		{"the port on another address", 7, inventory.FamilyInet, inventory.StateEstablished, "198.51.100.3:6379", false},
		{"v4-mapped on a dual-stack listener", 7, inventory.FamilyInet6, inventory.StateCloseWait, "[::ffff:198.51.100.2]:443", true},
		{"IPv6 on an IPv6 wildcard", 7, inventory.FamilyInet6, inventory.StateEstablished, "[2001:db8::2]:443", true},
		{"IPv4 socket, IPv6 wildcard only", 7, inventory.FamilyInet, inventory.StateEstablished, "198.51.100.2:443", false},
		{"a listener of another namespace", 7, inventory.FamilyInet, inventory.StateEstablished, "198.51.100.2:8080", false},
		{"an established socket is no listener", 7, inventory.FamilyInet, inventory.StateEstablished, "198.51.100.2:9000", false},
		{"an ephemeral port: outbound", 7, inventory.FamilyInet, inventory.StateEstablished, "198.51.100.2:40000", false},
		{"the listener itself", 7, inventory.FamilyInet, inventory.StateListen, "0.0.0.0:5432", false},
	} {
		sk := inventory.Socket{Netns: tc.netns, Family: tc.fam, State: tc.state, Local: netip.MustParseAddrPort(tc.local)}
		if got := lis.accepted(&sk); got != tc.want {
			t.Errorf("%s: accepted(%s in %d) = %v, want %v", tc.name, tc.local, tc.netns, got, tc.want)
		}
	}
}

// TestPathKeyedByListener: a server's connections accepted on :5432 from
// one client network, each from its own ephemeral port, make one
// destination holding all their samples; the server's own outbound
// connection to port 5432 elsewhere keys by the remote port; and once the
// listener is gone, an accepted socket reads as outbound.
func TestPathKeyedByListener(t *testing.T) {
	e, inv, pr, _ := newPathTest()
	lis := inventory.Socket{Family: inventory.FamilyInet, State: inventory.StateListen, Cookie: 100, Inode: 100,
		Local: netip.MustParseAddrPort("0.0.0.0:5432")}
	inv.sockets[7] = append(inv.sockets[7], lis)
	ages := map[uint64]time.Duration{1: 70 * time.Second, 2: 90 * time.Second, 3: 130 * time.Second, 4: 140 * time.Second}
	for cookie, age := range ages {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 * cookie)}), 43000+uint16(cookie))
		addIdle(inv, pr, cookie, netip.MustParseAddrPort("198.51.100.2:5432"), client, age)
	}
	addIdle(inv, pr, 5, netip.MustParseAddrPort("198.51.100.2:43005"), netip.MustParseAddrPort("203.0.113.5:5432"), 80*time.Second)

	ctx := context.Background()
	e.Scan(ctx)
	e.Snapshot()
	e.Probe(ctx, e.Targets())
	got := map[string][2]int{}
	for _, p := range e.Paths() {
		got[p.Dest.String()] = [2]int{p.Alive, p.Dead}
	}
	want := map[string][2]int{"clients 192.0.2.0/24 → :5432": {2, 2}, "203.0.113.0/24:5432": {1, 0}}
	if !maps.Equal(got, want) {
		t.Errorf("destinations (alive, dead) = %v, want %v", got, want)
	}

	// The server stops listening; its accepted connections stay.
	inv.sockets[7] = inv.sockets[7][1:]
	e.Scan(ctx)
	e.mu.Lock()
	d := e.destOfLocked(&inv.sockets[7][0])
	e.mu.Unlock()
	if want := pathidle.DestOf(inv.sockets[7][0].Remote); d != want {
		t.Errorf("without its listener: %s, want %s (outbound)", d, want)
	}
}
