package pathidle

import (
	"net/netip"
	"testing"
	"time"
)

// benchDest is the i-th of many destinations: one address, a port each, as
// a server's accepted sockets are when their listener is not seen (each
// client's ephemeral port a destination).
func benchDest(i int) Dest {
	return DestOf(netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i >> 16)}), uint16(i)))
}

// BenchmarkAddNewDest adds samples of ever new destinations to a table at
// its cap: the daemon's first probe pass over many peers, or over a
// server's accepted connections whose listener it did not see.
func BenchmarkAddNewDest(b *testing.B) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	tb := New(Config{Now: func() time.Time { return now }})
	for i := range DefaultConfig().MaxDests {
		tb.Add(Sample{Dest: benchDest(i), Idle: time.Minute, Outcome: Alive})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		tb.Add(Sample{Dest: benchDest(DefaultConfig().MaxDests + i), Idle: time.Minute, Outcome: Alive})
	}
	if tb.Len() != DefaultConfig().MaxDests {
		b.Fatalf("Len = %d, want the cap %d", tb.Len(), DefaultConfig().MaxDests)
	}
}

// BenchmarkEstimates ranks a full table's estimates, as every scrape of
// the metrics and every GET /api/v1/paths does.
func BenchmarkEstimates(b *testing.B) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	tb := New(Config{Now: func() time.Time { return now }})
	n := DefaultConfig().MaxDests
	for i := range n {
		tb.Add(Sample{Dest: benchDest(i), Idle: time.Minute, Outcome: Alive})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if got := len(tb.Estimates()); got != n {
			b.Fatalf("%d estimates, want %d", got, n)
		}
	}
}
