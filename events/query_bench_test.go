package events

import (
	"fmt"
	"testing"
)

// BenchmarkRingQuery pages through a full ring of the default size for one
// owner's events, as GET /api/v1/events?owner= does: every event held is
// matched.
func BenchmarkRingQuery(b *testing.B) {
	r := NewRing(DefaultRingSize, nil)
	for j := range DefaultRingSize {
		comm := "postgres"
		if j%100 == 0 {
			comm = "redis-server"
		}
		r.Add(Event{
			Kind: Suspect, Netns: "host", Family: "inet", Local: "198.51.100.2:5432",
			Remote: fmt.Sprintf("192.0.2.7:%d", 40000+j%20000), State: "ESTABLISHED", Cookie: uint64(j),
			Comm: comm, Reasons: []string{"idle"}, Verdict: "unprobed",
		})
	}
	b.ReportAllocs()
	for b.Loop() {
		if p := r.Query(Query{Owners: []string{"redis-server"}, Limit: MaxLimit}); len(p.Events) != DefaultRingSize/100 {
			b.Fatalf("%d events, want %d", len(p.Events), DefaultRingSize/100)
		}
	}
}
