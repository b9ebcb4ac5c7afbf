package exportertest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSeries: label names are merged over files, a histogram becomes its
// three series (le on the buckets only).
func TestSeries(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"a.prom": "# TYPE ghostd_x gauge\nghostd_x{netns=\"a\"} 1\n",
		"b.prom": "# TYPE ghostd_x gauge\nghostd_x{state=\"s\"} 1\n" +
			"# TYPE ghostd_h histogram\nghostd_h_bucket{mode=\"m\",le=\"+Inf\"} 1\nghostd_h_sum{mode=\"m\"} 1\nghostd_h_count{mode=\"m\"} 1\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]map[string]bool{
		"ghostd_x":        {"netns": true, "state": true},
		"ghostd_h_bucket": {"mode": true, "le": true},
		"ghostd_h_sum":    {"mode": true},
		"ghostd_h_count":  {"mode": true},
	}
	if diff := cmp.Diff(want, Series(t, filepath.Join(dir, "*.prom"))); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}
