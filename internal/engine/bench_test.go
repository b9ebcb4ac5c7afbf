package engine

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// idleSockets returns n idle sockets (cookies 1 to n, remote ports cycling
// through 1 to 60000), idle for two minutes: suspects on defaults.
func idleSockets(n int) []inventory.Socket {
	socks := make([]inventory.Socket, n)
	for i := range socks {
		socks[i] = idleSocket(uint64(i+1), uint16(i%60000+1), 2*time.Minute)
	}
	return socks
}

// newRecorder returns an event recorder with a ring of the default size.
func newRecorder(tb testing.TB) *events.Recorder {
	rec, err := events.NewRecorder(events.DefaultConfig(), nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return rec
}

// benchSteadyScan measures one daemon cycle (scan, target selection,
// snapshot) over n idle sockets that were all probed alive already. With
// rec, the engine records events into it, the clock moves between scans,
// and rec must hold one suspect event per socket after the first scan and
// still after the steady ones.
func benchSteadyScan(b *testing.B, n int, rec *events.Recorder) {
	e, inv, pr, c := newTest()
	if rec != nil {
		e.SetEvents(rec)
	}
	pr.verdicts = map[uint16]probe.Verdict{}
	inv.sockets[7] = idleSockets(n)
	for i := range inv.sockets[7] {
		pr.verdicts[inv.sockets[7][i].Remote.Port()] = probe.Alive
	}
	ctx := context.Background()
	e.Scan(ctx)
	for t := e.Targets(); len(t) > 0; t = e.Targets() { // MaxTargets at a time
		e.Probe(ctx, t)
	}
	e.Snapshot()
	checkSuspectEvents(b, rec, n, "first scan")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if rec != nil {
			c.t = c.t.Add(time.Millisecond)
		}
		e.Scan(ctx)
		if t := e.Targets(); len(t) != 0 {
			b.Fatalf("%d targets in steady state", len(t))
		}
		e.Snapshot()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/socket")
	checkSuspectEvents(b, rec, n, "steady state")
}

// checkSuspectEvents fails b unless rec (when not nil) recorded want
// suspect events.
func checkSuspectEvents(b *testing.B, rec *events.Recorder, want int, when string) {
	if rec == nil {
		return
	}
	if st := rec.Stats(); st.Recorded[0] != uint64(want) {
		b.Fatalf("%s: recorded %d suspect events, want %d", when, st.Recorded[0], want)
	}
}

// BenchmarkSteadyScan measures one daemon cycle (scan, target selection,
// snapshot) over N idle healthy sockets that were all probed alive already:
// the steady state of a host full of idle pools.
func BenchmarkSteadyScan(b *testing.B) {
	for _, n := range []int{10_000, 200_000} {
		b.Run(fmt.Sprintf("sockets=%d", n), func(b *testing.B) {
			benchSteadyScan(b, n, nil)
		})
	}
}

// BenchmarkSteadyScanEvents is BenchmarkSteadyScan with the event history
// on (a ring of the default size): the extra pass over the suspects that
// looks for new and vanishing ones, at every scan. Every socket is recorded
// as a suspect once, by the first scan, and never again.
func BenchmarkSteadyScanEvents(b *testing.B) {
	for _, n := range []int{10_000, 200_000} {
		b.Run(fmt.Sprintf("sockets=%d", n), func(b *testing.B) {
			benchSteadyScan(b, n, newRecorder(b))
		})
	}
}

// BenchmarkEventsPass measures what the event history adds to every scan:
// the pass over the suspects that finds new and vanishing ones, in the
// steady state (nothing new).
func BenchmarkEventsPass(b *testing.B) {
	const n = 200_000
	e, inv, _, c := newTest()
	e.SetEvents(&sink{})
	inv.sockets[7] = idleSockets(n)
	e.Scan(context.Background())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.t = c.t.Add(time.Millisecond)
		e.mu.Lock()
		e.scanEventsLocked(c.t)
		e.mu.Unlock()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/suspect")
}

// BenchmarkFirstScanEvents measures a daemon's first scan of a host of
// 200 000 idle suspects with and without the event history: every one of
// them is a new suspect, recorded into a ring of the default size.
func BenchmarkFirstScanEvents(b *testing.B) {
	socks := idleSockets(200_000)
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("events=%v", on), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				e, inv, _, _ := newTest()
				inv.sockets[7] = socks
				if on {
					e.SetEvents(newRecorder(b))
				}
				b.StartTimer()
				e.Scan(context.Background())
				e.Snapshot()
			}
		})
	}
}

// BenchmarkFirstProbePass measures what the engine adds to each probe of a
// first pass (targets, recording the verdicts, the path table, events)
// over N idle suspects that all answer alive, each from its own remote
// port, as a server's accepted connections are, with no listener in the
// dump: a path destination each. Events go to the daemon's default ring. The prober is a fake: the wire's cost is not in it.
func BenchmarkFirstProbePass(b *testing.B) { benchFirstProbePass(b, false) }

// BenchmarkFirstProbePassListening is BenchmarkFirstProbePass with the
// server's listener in the dump: the accepted connections share one path
// destination instead of making one each.
func BenchmarkFirstProbePassListening(b *testing.B) { benchFirstProbePass(b, true) }

func benchFirstProbePass(b *testing.B, listening bool) {
	const n = 20_000
	ctx := context.Background()
	b.ReportAllocs()
	probes := 0
	for b.Loop() {
		b.StopTimer()
		e, inv, pr, _ := newTest()
		rec, err := events.NewRecorder(events.DefaultConfig(), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		e.SetEvents(rec)
		pr.verdicts = map[uint16]probe.Verdict{}
		socks := make([]inventory.Socket, n)
		for i := range socks {
			socks[i] = idleSocket(uint64(i+1), uint16(i+1), 2*time.Minute)
			pr.verdicts[uint16(i+1)] = probe.Alive
		}
		if listening { // idleSocket's local end is 198.51.100.2:5432
			socks = append(socks, inventory.Socket{Family: inventory.FamilyInet, State: inventory.StateListen,
				Cookie: n + 1, Inode: n + 1, Local: netip.MustParseAddrPort("0.0.0.0:5432")})
		}
		inv.sockets[7] = socks
		e.Scan(ctx)
		b.StartTimer()
		for t := e.Targets(); len(t) > 0; t = e.Targets() {
			probes += len(e.Probe(ctx, t))
		}
		if want := 1; listening && len(e.Paths()) != want {
			b.Fatalf("%d path destinations, want %d", len(e.Paths()), want)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(probes), "ns/probe")
}

// fewOwners owns every socket with one of ten processes, as a host's few
// servers and pools do.
type fewOwners struct{}

func (fewOwners) Each(_ uint64, inodes []uint32, fn func(uint32, inventory.Owner)) {
	for _, ino := range inodes {
		pid := 100 + int(ino%10)
		fn(ino, inventory.Owner{PID: pid, Comm: "pool-" + strconv.Itoa(pid), Unit: "pool.service"})
	}
}

// BenchmarkScanAll measures what `ghostd scan --all` does besides the
// kernel's dump and the owners' lookup, over 200 000 healthy sockets
// listed out of cookie order (as a dump lists them): the scan into the
// table and the snapshot (scan), then building every session (sessions)
// and encoding each as the JSON document does (json).
func BenchmarkScanAll(b *testing.B) {
	const n = 200_000
	inv := &fakeInv{
		ns:      []inventory.Namespace{{Inode: 7, Name: "srv", Path: "/run/netns/srv", Kind: inventory.KindNamed}},
		sockets: map[uint64][]inventory.Socket{},
	}
	socks := make([]inventory.Socket, n)
	for i := range socks {
		cookie := uint64(i*7919%n + 1)
		socks[i] = idleSocket(cookie, uint16(cookie%60000+1), 2*time.Minute)
	}
	inv.sockets[7] = socks
	c := &clock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	newEngine := func() *Engine {
		return New(inv, nil, fewOwners{}, Options{Tracker: tracker.Config{Idle: 24 * time.Hour}, All: true, Now: c.now})
	}
	ctx := context.Background()
	perSocket := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/socket")
	}
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := newEngine()
			e.Scan(ctx)
			e.Snapshot()
		}
		perSocket(b)
	})
	e := newEngine()
	e.Scan(ctx)
	e.Snapshot()
	b.Run("sessions", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			listed := 0
			e.EachSessionAt(c.t, func(batch []exporter.Session) bool { listed += len(batch); return true })
			if listed != n {
				b.Fatalf("%d sessions listed, want %d", listed, n)
			}
		}
		perSocket(b)
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		var err error
		for b.Loop() {
			e.EachSessionAt(c.t, func(batch []exporter.Session) bool {
				for i := range batch {
					if buf, err = batch[i].AppendJSON(buf[:0], "    ", "  "); err != nil {
						b.Fatal(err)
					}
				}
				return true
			})
		}
		perSocket(b)
	})
}
