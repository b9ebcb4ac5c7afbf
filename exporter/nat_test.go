package exporter

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ghostd/ghostd/probe"
)

// Probes on connections NATed in their own namespace are counted apart, and
// also in ghostd_probes_total.
func TestNATProbesCounted(t *testing.T) {
	s := NewStore(BuildInfo{}, nil)
	s.ObserveProbe(probe.Result{Verdict: probe.Alive, Sent: 2, Replies: 1, RTT: time.Millisecond, NAT: probe.NATDNAT})
	s.ObserveProbe(probe.Result{Verdict: probe.Silent, Sent: 3, NAT: probe.NATRedirect + "+" + probe.NATSNAT})
	s.ObserveProbe(probe.Result{Verdict: probe.Alive, Sent: 1, Replies: 1, RTT: time.Millisecond})
	want := `# HELP ghostd_probe_nat_translated_total Probe segments sent on connections NATed in their own namespace, whose replies were matched on the conntrack reply tuple.
# TYPE ghostd_probe_nat_translated_total counter
ghostd_probe_nat_translated_total 5
# HELP ghostd_probes_total Probe segments sent.
# TYPE ghostd_probes_total counter
ghostd_probes_total 6
`
	if err := testutil.CollectAndCompare(s.Collector(), strings.NewReader(want), "ghostd_probe_nat_translated_total", "ghostd_probes_total"); err != nil {
		t.Error(err)
	}
}
