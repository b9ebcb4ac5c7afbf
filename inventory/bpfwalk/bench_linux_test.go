package bpfwalk

import (
	"context"
	"testing"
)

// BenchmarkWalk walks every socket of the host's shared TCP tables (all
// namespaces, no filter) with each variant. What the tables hold is
// whatever runs on the machine (sockets/op says how many): compare the
// variants within one run, not across machines. With few sockets the cost
// is the walk over the empty buckets; scripts/bench-onewalk.sh measures a
// loaded table.
func BenchmarkWalk(b *testing.B) {
	for _, v := range []string{VariantCast, VariantCopy} {
		b.Run(v, func(b *testing.B) {
			w := loadWalker(b, v)
			total := 0
			for b.Loop() {
				n, err := w.Walk(context.Background(), nil, func(*Record) error { return nil })
				if err != nil {
					b.Fatal(err)
				}
				total += n
			}
			b.ReportMetric(float64(total)/float64(b.N), "sockets/op")
		})
	}
}
