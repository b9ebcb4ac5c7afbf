package tracker

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/ghostd/ghostd/inventory"
)

// scanOf returns n ESTABLISHED sockets of one namespace; every 1/suspectEvery of
// them is a suspect of some kind (0: none) and the rest are healthy.
func scanOf(n, suspectEvery int) []inventory.Socket {
	out := make([]inventory.Socket, n)
	for i := range out {
		s := sock(uint64(i + 1))
		s.Local = netip.AddrPortFrom(netip.MustParseAddr("198.51.100.2"), 7000)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), uint16(i))
		if suspectEvery > 0 && i%suspectEvery == 0 {
			switch (i / suspectEvery) % 4 {
			case 0:
				quiet(time.Hour, time.Hour)(s)
			case 1:
				timer(inventory.TimerRetransmit, 3)(s)
			case 2:
				state(inventory.StateCloseWait)(s)
				lastAck(time.Hour)(s)
			case 3:
				timer(inventory.TimerZeroWindow, 1)(s)
			}
		}
		out[i] = *s
	}
	return out
}

// BenchmarkScan200k observes 200 000 sockets per op (one scan), then ends the
// namespace. It reports the cost per socket and the heap the tracker retains.
func BenchmarkScan200k(b *testing.B) {
	for _, c := range []struct {
		name  string
		every int
	}{{"healthy", 0}, {"1pct-suspects", 100}, {"all-idle", 1}} {
		b.Run(c.name, func(b *testing.B) {
			const n = 200_000
			socks := scanOf(n, c.every)
			if c.every == 1 {
				for i := range socks {
					quiet(time.Hour, time.Hour)(&socks[i])
				}
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			tr := New(DefaultConfig())
			now := t0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for i := range socks {
					tr.Observe(now, &socks[i])
				}
				tr.EndNamespace(now, socks[0].Netns)
				now = now.Add(15 * time.Second)
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/socket")
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)), "retained-B")
			b.ReportMetric(float64(tr.Len()), "entries")
			runtime.KeepAlive(tr)
			runtime.KeepAlive(socks)
		})
	}
}

func ExampleTracker() {
	tr := New(Config{Idle: 90 * time.Second})
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s := &inventory.Socket{Netns: 1, Cookie: 42, State: inventory.StateEstablished}
	s.Info.Len = 280
	s.Info.LastDataRecv, s.Info.LastDataSent = 120_000, 95_000 // ms
	fmt.Println(tr.Observe(now, s))
	tr.EndNamespace(now, 1)
	e, _ := tr.Get(s.Key())
	fmt.Println(e.Idle, e.SuspectSince.Equal(now))
	// Output:
	// idle
	// 1m35s true
}
