package events

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkRingMemory reports what a full ring of the default size holds
// on the heap, with events shaped like the daemon's (addresses, owner,
// reasons, an RTT).
func BenchmarkRingMemory(b *testing.B) {
	var before, after runtime.MemStats
	for i := 0; i < b.N; i++ {
		runtime.GC()
		runtime.ReadMemStats(&before)
		r := NewRing(DefaultRingSize, nil)
		for j := range DefaultRingSize * 2 {
			rtt := 0.0004
			r.Add(Event{
				Kind: Ghost, Netns: "pid-postgres-4242", NetnsInode: 4026531840, Family: "inet6",
				Local: fmt.Sprintf("[2001:db8::1]:%d", 5432), Remote: fmt.Sprintf("[2001:db8::%x]:%d", j, 40000+j%20000),
				State: "ESTABLISHED", Cookie: uint64(j), Inode: uint32(j), PID: 4242, Comm: "postgres", Unit: "postgresql.service",
				Reasons: []string{"idle"}, Verdict: "silent", Attempts: 3, RTTSeconds: &rtt, IdleSeconds: 412.5,
			})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/DefaultRingSize, "bytes/event")
		runtime.KeepAlive(r)
	}
}
