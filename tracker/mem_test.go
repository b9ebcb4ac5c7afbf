package tracker

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/ghostd/ghostd/inventory"
)

// bytesPerEntry observes n idle suspects of one namespace, from IPv6
// addresses when v6 is set, and returns the heap the tracker retains per
// remembered socket: HeapAlloc after a GC, minus HeapAlloc before, over n.
func bytesPerEntry(n int, v6 bool) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr := New(DefaultConfig())
	s := sock(1, quiet(time.Hour, time.Hour))
	if v6 {
		s.Family = inventory.FamilyInet6
		s.Local = netip.MustParseAddrPort("[2001:db8::2]:7000")
	}
	now := t0
	for i := range n {
		s.Cookie = uint64(i + 1)
		if v6 {
			s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), uint16(i))
		} else {
			s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), uint16(i))
		}
		tr.Observe(now, s)
		now = now.Add(time.Microsecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if tr.Len() != n {
		panic("not every socket was remembered")
	}
	runtime.KeepAlive(tr)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// BenchmarkMemory reports the heap a remembered socket costs, map included.
func BenchmarkMemory(b *testing.B) {
	for _, c := range []struct {
		name string
		v6   bool
	}{{"ipv4", false}, {"ipv6", true}} {
		b.Run(c.name, func(b *testing.B) {
			var per float64
			for b.Loop() {
				per = bytesPerEntry(100_000, c.v6)
			}
			b.ReportMetric(per, "B/entry")
		})
	}
}

// maxBytesPerEntry bounds what a remembered socket may cost on amd64, map
// and 32-byte Tag included: its Entry alone is 424 bytes.
const maxBytesPerEntry = 295

func TestMemoryPerEntry(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the bound is for amd64, not %s", runtime.GOARCH)
	}
	for _, v6 := range []bool{false, true} {
		if got := bytesPerEntry(100_000, v6); got > maxBytesPerEntry {
			t.Errorf("a remembered socket (IPv6 %v) costs %.1f bytes, more than %d", v6, got, maxBytesPerEntry)
		} else {
			t.Logf("a remembered socket (IPv6 %v) costs %.1f bytes", v6, got)
		}
	}
}
