package exporter

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ghostd/ghostd/pathidle"
)

// pathSource is a session source with path estimates, as the engine is.
type pathSource struct {
	staticSessions
	table *pathidle.Table
}

func (p pathSource) Paths() []pathidle.Estimate { return p.table.Estimates() }

// pathFixture: 12 destinations with an estimate (destination i alive up to
// 10+i s, dead from 30+i s, comm postgres), and one without (alive only)
// whose clients connected to this host's port 443.
func pathFixture() *Snapshot {
	tb := pathidle.New(pathidle.Config{Now: func() time.Time { return t0 }})
	for i := range 12 {
		d := pathidle.DestOf(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, 1}), uint16(5000+i)))
		for k := range 2 + i%3 { // 2 to 4 samples a side: different evidence
			tb.Add(pathidle.Sample{Dest: d, Idle: time.Duration(10+i-k) * time.Second, Outcome: pathidle.Alive, Comm: "postgres"})
			tb.Add(pathidle.Sample{Dest: d, Idle: time.Duration(30+i+k) * time.Second, Outcome: pathidle.Dead, Comm: "postgres"})
		}
	}
	v6 := pathidle.ClientsOf(netip.MustParseAddrPort("[2001:db8:2::7]:50001"), 443)
	tb.Add(pathidle.Sample{Dest: v6, Idle: 90 * time.Second, Outcome: pathidle.Alive})
	snap := fixtureSnapshot()
	snap.Source = pathSource{staticSessions: staticSessions(snap.Doc.Sessions), table: tb}
	snap.Summary = Summarize(snap.Doc.Sessions)
	return snap
}

func TestPathsAPI(t *testing.T) {
	s := NewStore(testBld, func() time.Time { return t0 })
	h := NewHandler(s, HandlerOptions{})
	if rec := get(t, h, "/api/v1/paths"); rec.Code != 503 {
		t.Errorf("paths before scan: %d, want 503", rec.Code)
	}
	s.Publish(fixtureSnapshot()) // a source without estimates
	rec := get(t, h, "/api/v1/paths")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"paths":[]}` {
		t.Errorf("paths without estimates: %d %s", rec.Code, rec.Body)
	}
	s.Publish(pathFixture())
	rec = get(t, h, "/api/v1/paths")
	var doc PathsDocument
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || rec.Code != 200 {
		t.Fatalf("paths: %d %v\n%s", rec.Code, err, rec.Body)
	}
	if len(doc.Paths) != 13 {
		t.Fatalf("got %d paths, want 13", len(doc.Paths))
	}
	first, last := doc.Paths[0], doc.Paths[12]
	// Destination 5002 has the most samples (4 a side) and the smallest
	// port among those: alive up to 12 s, dead from 32 s.
	if first.Destination != "198.51.100.0/24:5002" || first.Direction != "outbound" || !first.Estimated || *first.LowerSeconds != 12 || *first.UpperSeconds != 32 ||
		first.AliveSamples != 4 || first.DeadSamples != 4 || first.Keepalive == nil || first.Keepalive.IdleSeconds != 9 ||
		len(first.Advice) != 1 || first.Advice[0].Owner != "postgres" || !strings.Contains(first.Advice[0].Setting, "tcp_keepalives_idle = 9") {
		t.Errorf("first path = %+v", first)
	}
	if last.Destination != "clients 2001:db8:2::/64 → :443" || last.Direction != "inbound" || last.Estimated || last.LowerSeconds != nil || last.MinDeadIdleSeconds != nil ||
		*last.MaxAliveIdleSeconds != 90 || !strings.Contains(last.Why, "no connection confirmed dead") || last.Advice != nil {
		t.Errorf("last path = %+v", last)
	}
	for _, field := range []string{`"max_alive_idle_seconds":90`, `"min_dead_idle_seconds":null`, `"owners":[]`, `"estimated":false`, `"direction":"inbound"`} {
		if !strings.Contains(rec.Body.String(), field) {
			t.Errorf("JSON lacks %s", field)
		}
	}
}

// TestPathMetricBounded: only the MaxPathSeries best evidenced estimated
// destinations are exported, two series each; one without an estimate never.
func TestPathMetricBounded(t *testing.T) {
	s := NewStore(testBld, func() time.Time { return t0 })
	s.Publish(pathFixture())
	if n := testutil.CollectAndCount(s.Collector(), "ghostd_path_idle_timeout_seconds"); n != 2*MaxPathSeries {
		t.Errorf("%d series, want %d", n, 2*MaxPathSeries)
	}
	want := `# HELP ghostd_path_idle_timeout_seconds ` + pathHelp() + `
# TYPE ghostd_path_idle_timeout_seconds gauge
`
	for _, port := range []int{5002, 5005, 5008, 5011, 5001, 5004, 5007, 5010, 5000, 5003} {
		i := port - 5000
		want += fmt.Sprintf("ghostd_path_idle_timeout_seconds{bound=\"lower\",destination=\"198.51.100.0/24:%d\"} %d\n", port, 10+i)
		want += fmt.Sprintf("ghostd_path_idle_timeout_seconds{bound=\"upper\",destination=\"198.51.100.0/24:%d\"} %d\n", port, 30+i)
	}
	if err := testutil.CollectAndCompare(s.Collector(), strings.NewReader(want), "ghostd_path_idle_timeout_seconds"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(s.Collector(), "ghostd_path_idle_timeout_seconds"); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

func pathHelp() string {
	return "Estimated idle timeout of the network path to a destination (remote /24 or /64 and port; for accepted connections, the clients' /24 or /64 and the local port): the flow was proved alive at the lower bound and dead at the upper. " +
		"Only the 10 estimated destinations with the most samples."
}

func TestPathsOnPage(t *testing.T) {
	s := NewStore(testBld, func() time.Time { return t0 })
	h := NewHandler(s, HandlerOptions{})
	s.Publish(fixtureSnapshot())
	if body := get(t, h, "/").Body.String(); strings.Contains(body, "Path idle timeouts") {
		t.Error("page shows a path table without estimates")
	}
	s.Publish(pathFixture())
	body := get(t, h, "/").Body.String()
	for _, want := range []string{"Path idle timeouts", "198.51.100.0/24:5002", "forgets idle flows after 12 s to 32 s", "tcp_keepalives_idle = 9", "no connection confirmed dead yet", "clients 2001:db8:2::/64 → :443"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestHostHintOnPage(t *testing.T) {
	snap := fixtureSnapshot()
	snap.Doc.Sessions[0].HostHint = "shared"
	s := NewStore(testBld, func() time.Time { return t0 })
	s.Publish(snap)
	if body := get(t, NewHandler(s, HandlerOptions{}), "/").Body.String(); !strings.Contains(body, "host shared</span>") {
		t.Error("the page does not show the host hint")
	}
}
