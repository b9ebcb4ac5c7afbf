package exporter

import (
	"bytes"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/probe"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenStores builds the stores whose expositions are pinned in testdata/NAME.prom.
func goldenStores() map[string]*Store {
	empty := NewStore(testBld, func() time.Time { return t0 })

	scanned := NewStore(testBld, func() time.Time { return t0 })
	scanned.Publish(fixtureSnapshot())
	scanned.ObserveProbe(probe.Result{Verdict: probe.Silent, Sent: 3, Rejected: probe.Rejects{probe.RejectRSTSeq: 2, probe.RejectICMPQuote: 5}})
	scanned.ObserveProbe(probe.Result{Verdict: probe.Reset, Sent: 1, Replies: 1, RTT: 400 * time.Microsecond})
	scanned.ObserveProbe(probe.Result{Verdict: probe.Alive, Sent: 1, Replies: 1, RTT: 200 * time.Microsecond,
		Rejected: probe.Rejects{probe.RejectRSTSeq: 40, probe.RejectQueueFull: 1}, CaptureDrops: 3, CaptureBadChecksums: 2})
	scanned.ObserveProbe(probe.Result{Verdict: probe.Unreachable, Sent: 2, Replies: 1, RTT: 30 * time.Millisecond})
	scanned.ObserveKill("host", "reset", nil)
	scanned.ObserveKill("host", "reset", nil)
	scanned.ObserveKill("host", "silent", errnoErrorForTest())
	scanned.SetKillSupported(true)
	scanned.SetConfigReload(true, t0.Add(-time.Hour))
	scanned.SetCapabilities(map[string]bool{"CAP_NET_RAW": true, "CAP_BPF": false})
	// Two ghosts of two owners, with room for one: the other is "other".
	scanned.SetOwnersTopK(1)
	rec, err := events.NewRecorder(events.Config{RingSize: 2, FileMaxBytes: events.MinFileMaxBytes, FilesKept: 1}, func() time.Time { return t0 }, nil)
	if err != nil {
		panic(err)
	}
	for _, k := range []events.Kind{events.Suspect, events.Ghost, events.Killed} { // the suspect leaves the ring of 2
		rec.Emit(events.Event{Kind: k})
	}
	scanned.SetEvents(rec)

	// A namespace that left the scan disappears from gauges and kill counters.
	shrunk := NewStore(testBld, func() time.Time { return t0 })
	shrunk.Publish(fixtureSnapshot())
	shrunk.ObserveKill("blue", "close_wait", nil)
	shrunk.ObserveKill("host", "reset", nil)
	next := fixtureSnapshot()
	next.Doc.ScannedAt = t0.Add(time.Minute)
	next.Doc.Namespaces = next.Doc.Namespaces[:1]
	next.Doc.Sessions = next.Doc.Sessions[:1]
	next.Sockets = next.Sockets[:3]
	next.ProbeMode = "blind"
	shrunk.Publish(next)
	shrunk.SetKillSupported(false)
	shrunk.SetConfigReload(false, time.Time{})

	// A Kubernetes node: a pod's namespace, named by the container runtime.
	pods := NewStore(testBld, func() time.Time { return t0 })
	podSnap := fixtureSnapshot()
	podSnap.Doc.Namespaces = append(podSnap.Doc.Namespaces, NamespaceStatus{Netns: "shop/cart-7d9f", NetnsInode: 4026532999, Kind: "named",
		Sockets: 2, Duration: time.Millisecond, Pod: "cart-7d9f", K8sNamespace: "shop"})
	pods.Publish(podSnap)

	return map[string]*Store{"empty": empty, "scanned": scanned, "shrunk": shrunk, "pods": pods}
}

func TestCollectorGolden(t *testing.T) {
	for name, s := range goldenStores() {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(s.Collector())
			golden := filepath.Join("testdata", name+".prom")
			if *update {
				writeExposition(t, reg, golden)
			}
			f, err := os.Open(golden)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := testutil.GatherAndCompare(reg, f); err != nil {
				t.Errorf("%s (run with -update to accept): %v", golden, err)
			}
		})
	}
}

func writeExposition(t *testing.T, g prometheus.Gatherer, path string) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCollectorLint(t *testing.T) {
	for name, s := range goldenStores() {
		problems, err := testutil.CollectAndLint(s.Collector())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s: %s", name, p.Metric, p.Text)
		}
	}
}

// TestPromtoolCheckMetrics lints the golden files with the real promtool.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Geteuid() == 0 {
			t.Fatal("promtool not found: install Debian's prometheus package (make deps)")
		}
		t.Skip("needs promtool (Debian package prometheus; make deps installs it as root)")
	}
	files, _ := filepath.Glob("testdata/*.prom")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		in, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("promtool check metrics %s: %v\n%s", f, err, out)
		}
	}
}

func TestDescribeMatchesCollect(t *testing.T) {
	// A pedantic registry fails Gather when Collect sends a metric whose
	// descriptor Describe did not announce, or an inconsistent one.
	s := goldenStores()["scanned"]
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	n := 0
	ch := make(chan *prometheus.Desc, 64)
	s.Collector().Describe(ch)
	close(ch)
	for range ch {
		n++
	}
	if n == 0 {
		t.Fatal("Describe sent nothing")
	}
}

func TestStoreReadyAndSnapshot(t *testing.T) {
	s := NewStore(testBld, nil)
	if s.Ready() || s.Snapshot() != nil {
		t.Fatal("new store is ready")
	}
	s.Publish(nil)
	if s.Ready() {
		t.Fatal("Publish(nil) made the store ready")
	}
	snap := fixtureSnapshot()
	s.Publish(snap)
	if !s.Ready() || s.Snapshot() != snap {
		t.Fatal("Publish did not store the snapshot")
	}
}

// TestConcurrentPublishAndScrape runs scans, probes, kills and scrapes at
// once; -race checks the locking.
func TestConcurrentPublishAndScrape(t *testing.T) {
	s := NewStore(testBld, nil)
	reg := NewRegistry(s)
	h := NewHandler(s, HandlerOptions{Registry: reg})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			s.Publish(fixtureSnapshot())
			s.ObserveProbe(probe.Result{Verdict: probe.Reset, Sent: 1, Replies: 1, RTT: time.Duration(i) * time.Microsecond})
			s.ObserveKill("host", "reset", nil)
			s.SetKillSupported(i%2 == 0)
		}
	}()
	for range 50 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"/", "/api/v1/sessions", "/metrics"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		}
	}
	<-done
}

// TestKilledSessionsNotCounted: a session ghostd already killed is neither a
// ghost nor a suspect in the gauges.
func TestKilledSessionsNotCounted(t *testing.T) {
	s := NewStore(testBld, func() time.Time { return t0 })
	snap := fixtureSnapshot()
	before := countGhosts(t, s, snap)
	killed := snap.Doc.Sessions[0]
	killed.Killed, killed.Cookie = true, 999999
	snap.Doc.Sessions = append(snap.Doc.Sessions, killed)
	if after := countGhosts(t, s, snap); after != before {
		t.Errorf("ghost+suspect series sum %v with a killed session, %v without", after, before)
	}
}

func countGhosts(t *testing.T, s *Store, snap *Snapshot) float64 {
	t.Helper()
	s.Publish(snap)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == "ghostd_ghost_sessions" || mf.GetName() == "ghostd_suspect_sessions" {
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	if sum == 0 {
		t.Fatal("the fixture has no ghosts or suspects to compare")
	}
	return sum
}

// A namespace name that is not valid UTF-8 (a local user controls comms and
// cgroup paths) must not take the ghost series out of /metrics: every series
// is still gathered, with the name made valid.
func TestInvalidUTF8LabelsKeepEverySeries(t *testing.T) {
	s := NewStore(testBld, func() time.Time { return t0 })
	snap := fixtureSnapshot()
	bad := "pid-\xff\xfe-42"
	for i := range snap.Doc.Sessions {
		snap.Doc.Sessions[i].Netns = bad
	}
	for i := range snap.Doc.Namespaces {
		if snap.Doc.Namespaces[i].Netns == "host" {
			snap.Doc.Namespaces[i].Netns = bad
		}
	}
	s.Publish(snap)
	s.ObserveKill(bad, "reset", nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	want := strings.ToValidUTF8(bad, "\uFFFD")
	var ghosts float64
	seen := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "netns" {
					seen[mf.GetName()+" "+lp.GetValue()] = true
				}
			}
			if mf.GetName() == "ghostd_ghost_sessions" {
				ghosts += m.GetGauge().GetValue()
			}
		}
	}
	for _, name := range []string{"ghostd_ghost_sessions", "ghostd_suspect_sessions", "ghostd_ghosts_killed_total"} {
		if !seen[name+" "+want] {
			t.Errorf("no %s{netns=%q}; have %v", name, want, seen)
		}
	}
	if ghosts == 0 {
		t.Error("ghostd_ghost_sessions lost its series")
	}
}

// probe_replies_total counts each reply under its own kind: a round that
// took an ICMP error and then the peer's ACK is one icmp and one ack, not
// two acks.
func TestRepliesCountedByKind(t *testing.T) {
	s := NewStore(testBld, nil)
	s.ObserveProbe(probe.Result{Verdict: probe.Alive, Sent: 2, Replies: 2, RTT: time.Millisecond})
	s.ObserveProbe(probe.Result{Verdict: probe.Reset, Sent: 1, Replies: 1, RTT: time.Millisecond})
	s.ObserveProbe(probe.Result{Verdict: probe.Unreachable, Sent: 3, Replies: 1, RTT: time.Millisecond})
	want := `
# HELP ghostd_probe_replies_total Replies matched to probes, by kind (ack, rst, icmp).
# TYPE ghostd_probe_replies_total counter
ghostd_probe_replies_total{kind="ack"} 1
ghostd_probe_replies_total{kind="icmp"} 2
ghostd_probe_replies_total{kind="rst"} 1
`
	if err := testutil.CollectAndCompare(s.Collector(), strings.NewReader(want), "ghostd_probe_replies_total"); err != nil {
		t.Error(err)
	}
}
