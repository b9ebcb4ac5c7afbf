package engine

import (
	"context"
	"testing"
	"time"

	"github.com/ghostd/ghostd/inventory"
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

// TestPathEstimateFromProbes: idle connections to one destination, proved
// alive up to 90 s idle and dead from 130 s, give the estimate (90 s, 130 s];
// a ghost re-confirmed later is not counted again, and the owner's comm
// picks the advice.
func TestPathEstimateFromProbes(t *testing.T) {
	inv := &fakeInv{
		ns:      []inventory.Namespace{{Inode: 7, Name: "srv", Path: "/run/netns/srv", Kind: inventory.KindNamed}},
		sockets: map[uint64][]inventory.Socket{},
	}
	pr := cookieProber{}
	c := &clock{t: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
	e := New(inv, pr, &fakeOwners{}, Options{
		Tracker: tracker.Config{Idle: time.Minute}, Backoff: 5 * time.Minute, Reconfirm: time.Minute, Now: c.now,
	})
	ages := map[uint64]time.Duration{1: 70 * time.Second, 2: 80 * time.Second, 3: 90 * time.Second, 4: 130 * time.Second, 5: 140 * time.Second}
	for cookie, age := range ages {
		sk := idleSocket(cookie, 40000+uint16(cookie), age)
		sk.Local, sk.Remote = sk.Remote, sk.Local // the local end is the client: the destination is 198.51.100.0/24:5432
		sk.Info.LastAckRecv = uint32(age.Milliseconds())
		inv.sockets[7] = append(inv.sockets[7], sk)
		pr[cookie] = probe.Alive
		if age > 100*time.Second {
			pr[cookie] = probe.Silent
		}
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
