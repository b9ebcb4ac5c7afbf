package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
)

// BenchmarkSteadyScan measures one daemon cycle (scan, target selection,
// snapshot) over N idle healthy sockets that were all probed alive already:
// the steady state of a host full of idle pools.
func BenchmarkSteadyScan(b *testing.B) {
	for _, n := range []int{10_000, 200_000} {
		b.Run(fmt.Sprintf("sockets=%d", n), func(b *testing.B) {
			e, inv, pr, _ := newTest()
			pr.verdicts = map[uint16]probe.Verdict{}
			socks := make([]inventory.Socket, n)
			for i := range socks {
				socks[i] = idleSocket(uint64(i+1), uint16(i%60000+1), 2*time.Minute)
				pr.verdicts[uint16(i%60000+1)] = probe.Alive
			}
			inv.sockets[7] = socks
			ctx := context.Background()
			e.Scan(ctx)
			for t := e.Targets(); len(t) > 0; t = e.Targets() { // MaxTargets at a time
				e.Probe(ctx, t)
			}
			e.Snapshot()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.Scan(ctx)
				if t := e.Targets(); len(t) != 0 {
					b.Fatalf("%d targets in steady state", len(t))
				}
				e.Snapshot()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/socket")
		})
	}
}

// BenchmarkFirstProbePass measures what the engine adds to each probe of a
// first pass (targets, recording the verdicts, the path table, events)
// over N idle suspects that all answer alive, each from its own remote
// port, as a server's accepted connections are. Events go to the daemon's
// default ring. The prober is a fake: the wire's cost is not in it.
func BenchmarkFirstProbePass(b *testing.B) {
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
		inv.sockets[7] = socks
		e.Scan(ctx)
		b.StartTimer()
		for t := e.Targets(); len(t) > 0; t = e.Targets() {
			probes += len(e.Probe(ctx, t))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(probes), "ns/probe")
}
