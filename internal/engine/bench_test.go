package engine

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
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
