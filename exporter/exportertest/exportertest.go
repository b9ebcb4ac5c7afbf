// Package exportertest reads the exporter's golden expositions for the tests
// of what queries its metrics (dashboards, alert rules).
package exportertest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Series returns the series names the expositions matching glob (such as
// "../exporter/testdata/*.prom") hold, each with the label names it carries
// in any of them. A histogram's series are its _bucket (with le), _sum and
// _count, as Prometheus stores them. No file, or one that does not parse,
// fails t.
func Series(t testing.TB, glob string) map[string]map[string]bool {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no exporter golden files at %s: %v", glob, err)
	}
	series := map[string]map[string]bool{}
	add := func(name string, fam *dto.MetricFamily, extra ...string) {
		if series[name] == nil {
			series[name] = map[string]bool{}
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				series[name][l.GetName()] = true
			}
		}
		for _, l := range extra {
			series[name][l] = true
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for name, fam := range fams {
			if fam.GetType() != dto.MetricType_HISTOGRAM {
				add(name, fam)
				continue
			}
			add(name+"_bucket", fam, "le")
			add(name+"_sum", fam)
			add(name+"_count", fam)
		}
	}
	return series
}
