package exporter

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/crypto/bcrypt"
)

func get(t *testing.T, h http.Handler, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}

func TestReadiness(t *testing.T) {
	s := NewStore(testBld, func() time.Time { return t0 })
	h := NewHandler(s, HandlerOptions{})
	if rec := get(t, h, "/-/healthy"); rec.Code != http.StatusOK {
		t.Errorf("healthy before scan: %d", rec.Code)
	}
	if rec := get(t, h, "/-/ready"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("ready before scan: %d, want 503", rec.Code)
	}
	if rec := get(t, h, "/api/v1/sessions"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("sessions before scan: %d, want 503", rec.Code)
	}
	if rec := get(t, h, "/"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "No scan has completed yet") {
		t.Errorf("page before scan: %d\n%s", rec.Code, rec.Body)
	}
	s.Publish(fixtureSnapshot())
	for _, p := range []string{"/-/healthy", "/-/ready"} {
		if rec := get(t, h, p); rec.Code != http.StatusOK {
			t.Errorf("%s after scan: %d", p, rec.Code)
		}
	}
	if rec := get(t, h, "/nope"); rec.Code != http.StatusNotFound {
		t.Errorf("/nope: %d, want 404", rec.Code)
	}
}

func TestSessionsFilters(t *testing.T) {
	s := NewStore(testBld, nil)
	s.Publish(fixtureSnapshot())
	h := NewHandler(s, HandlerOptions{})
	tests := []struct {
		query      string
		cookies    []uint64
		namespaces []string
	}{
		{"", []uint64{11, 12, 13, 21}, []string{"host", "blue", "pid-nginx-77"}},
		{"?ghost=true", []uint64{11, 12}, []string{"host", "blue", "pid-nginx-77"}},
		{"?ghost=false", []uint64{13, 21}, []string{"host", "blue", "pid-nginx-77"}},
		{"?netns=blue", []uint64{21}, []string{"blue"}},
		{"?netns=blue&netns=host", []uint64{11, 12, 13, 21}, []string{"host", "blue"}},
		{"?netns=hos", []uint64{}, []string{}},
		{"?verdict=reset", []uint64{12}, []string{"host", "blue", "pid-nginx-77"}},
		{"?verdict=reset&verdict=alive", []uint64{12, 13}, []string{"host", "blue", "pid-nginx-77"}},
		{"?reason=retransmitting", []uint64{12}, []string{"host", "blue", "pid-nginx-77"}},
		{"?reason=idle&ghost=true&netns=host", []uint64{11, 12}, []string{"host"}},
		{"?reason=close_wait&reason=retransmitting", []uint64{12, 21}, []string{"host", "blue", "pid-nginx-77"}},
	}
	for _, tt := range tests {
		rec := get(t, h, "/api/v1/sessions"+tt.query)
		if rec.Code != http.StatusOK {
			t.Errorf("%q: status %d: %s", tt.query, rec.Code, rec.Body)
			continue
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%q: content type %q", tt.query, ct)
		}
		var doc Document
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			t.Fatalf("%q: %v", tt.query, err)
		}
		cookies := []uint64{}
		for _, s := range doc.Sessions {
			cookies = append(cookies, s.Cookie)
		}
		names := []string{}
		for _, n := range doc.Namespaces {
			names = append(names, n.Netns)
		}
		if diff := cmp.Diff(tt.cookies, cookies); diff != "" {
			t.Errorf("%q: sessions (-want +got):\n%s", tt.query, diff)
		}
		if diff := cmp.Diff(tt.namespaces, names); diff != "" {
			t.Errorf("%q: namespaces (-want +got):\n%s", tt.query, diff)
		}
		// Empty results are [] in JSON, never null.
		if !strings.Contains(rec.Body.String(), `"sessions":[`) {
			t.Errorf("%q: sessions not a JSON array:\n%s", tt.query, rec.Body)
		}
	}
}

func TestSessionsUnfilteredRoundTrip(t *testing.T) {
	s := NewStore(testBld, nil)
	want := fixtureSnapshot()
	s.Publish(want)
	rec := get(t, NewHandler(s, HandlerOptions{}), "/api/v1/sessions")
	var got Document
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.Doc, got, cmpopts.IgnoreFields(NamespaceStatus{}, "Kind", "Duration")); diff != "" {
		t.Errorf("document (-want +got):\n%s", diff)
	}
}

func TestSessionsBadFilters(t *testing.T) {
	s := NewStore(testBld, nil)
	s.Publish(fixtureSnapshot())
	h := NewHandler(s, HandlerOptions{})
	tooMany := "?" + strings.Repeat("verdict=alive&", MaxFilterValues) + "netns=host"
	for _, q := range []string{"?verdict=dead", "?reason=sleepy", "?ghost=maybe", tooMany} {
		rec := get(t, h, "/api/v1/sessions"+q)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", q, rec.Code)
		}
		var e map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e["error"] == "" {
			t.Errorf("%q: body %q is not a JSON error", q, rec.Body)
		}
	}
}

func TestPageEscapesAndSummarises(t *testing.T) {
	s := NewStore(testBld, func() time.Time { return t0.Add(90 * time.Second) })
	s.Publish(fixtureSnapshot())
	rec := get(t, NewHandler(s, HandlerOptions{}), "/")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	body := rec.Body.String()
	if strings.Contains(body, "<script>") || strings.Contains(body, "<script") {
		t.Errorf("page contains an unescaped <script>:\n%s", body)
	}
	for _, want := range []string{
		"&lt;script&gt;alert(1)&lt;/script&gt; [99]", // the hostile comm, escaped
		"2 ghosts",            // title
		"postgres [4242]",     // process
		"postgresql.service",  // unit
		"0123456789ab",        // container
		"[2001:db8::2]:51234", // remote
		"6m 52s",              // idle 412.5 s
		"2h 1m",               // idle 7300 s
		"in_window",           // probe mode
		"≥1h 58m",             // PostgreSQL's kernel deadline (keepalive: a lower bound)
		">never<",             // sshd's: no keepalive, nothing in flight
		"1m 30s ago",          // scan age
		"error: open /proc/77/ns/net: no such file or directory",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Ghosts come before healthy suspects.
	if strings.Index(body, "198.51.100.7:40000") > strings.Index(body, "203.0.113.9:50000") {
		t.Error("ghost listed after a healthy suspect")
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "page.html"), rec.Body.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPageTruncates(t *testing.T) {
	snap := fixtureSnapshot()
	base := snap.Doc.Sessions[0]
	snap.Doc.Sessions = nil
	for i := range maxPageRows + 10 {
		ss := base
		ss.Cookie = uint64(i)
		snap.Doc.Sessions = append(snap.Doc.Sessions, ss)
	}
	d := buildPage(snap, testBld, t0)
	if len(d.Rows) != maxPageRows || !d.Truncated || d.Total != maxPageRows+10 || d.Ghosts != maxPageRows+10 {
		t.Errorf("rows %d truncated %v total %d ghosts %d", len(d.Rows), d.Truncated, d.Total, d.Ghosts)
	}
}

func TestHumanSeconds(t *testing.T) {
	for in, want := range map[float64]string{
		-1: "0s", 0: "0s", 2.5: "2.5s", 45: "45s", 412.5: "6m 52s", 3600: "1h 0m",
		7875: "2h 11m", 90000: "1d 1h",
	} {
		if got := humanSeconds(in); got != want {
			t.Errorf("humanSeconds(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	s := NewStore(testBld, nil)
	s.Publish(fixtureSnapshot())
	rec := get(t, NewHandler(s, HandlerOptions{}), "/metrics")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if !strings.Contains(rec.Body.String(), `ghostd_ghost_sessions{family="inet",netns="host",verdict="silent"} 1`) {
		t.Errorf("metrics lack the ghost gauge:\n%s", rec.Body)
	}
}

func TestServeBindsAndShutsDown(t *testing.T) {
	ls, err := Listen([]string{"127.0.0.1:0", "[::1]:0"})
	if err != nil {
		t.Skipf("loopback: %v", err)
	}
	s := NewStore(testBld, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListeners(ctx, NewHandler(s, HandlerOptions{}), ls, "", nil) }()
	// Bound before serving: a request made right now must not be refused.
	for _, l := range ls {
		resp, err := http.Get("http://" + l.Addr().String() + "/-/healthy")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "OK\n" {
			t.Errorf("%s: %d %q", l.Addr(), resp.StatusCode, b)
		}
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeListeners: %v", err)
		}
	case <-time.After(ShutdownTimeout + time.Second):
		t.Fatal("no shutdown within the timeout")
	}
	t.Logf("shutdown took %s", time.Since(start))
	if _, err := net.Dial("tcp", ls[0].Addr().String()); err == nil {
		t.Error("listener still accepting after shutdown")
	}
}

func TestServeWithWebConfig(t *testing.T) {
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(cfg, []byte("basic_auth_users:\n  prom: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ls, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Skipf("loopback: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- ServeListeners(ctx, NewHandler(NewStore(testBld, nil), HandlerOptions{}), ls, cfg, nil)
	}()
	url := "http://" + ls[0].Addr().String() + "/-/healthy"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without credentials: %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth("prom", "secret")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with credentials: %d, want 200", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func TestServeRejectsBadWebConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(cfg, []byte("tls_server_config:\n  cert_file: /nonexistent.crt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := serve(context.Background(), http.NotFoundHandler(), []string{"127.0.0.1:0"}, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "web config") {
		t.Errorf("Serve with a broken web config: %v", err)
	}
}

func TestSessionsNeverNull(t *testing.T) {
	s := NewStore(testBld, nil)
	s.Publish(&Snapshot{Doc: Document{ScannedAt: t0}})
	rec := get(t, NewHandler(s, HandlerOptions{}), "/api/v1/sessions")
	want := `{"scanned_at":"2026-11-26T12:00:00Z","namespaces":[],"sessions":[]}` + "\n"
	if diff := cmp.Diff(want, rec.Body.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// At most MaxHeavy page and session requests run at once; the next gets 429
// at once instead of queueing, and the slot is free again afterwards.
func TestHeavyRequestsAreCapped(t *testing.T) {
	limit := make(heavy, 1)
	entered, release := make(chan struct{}), make(chan struct{})
	h := limit.serve(func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-release
	})
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		done <- rec.Code
	}()
	<-entered
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("second request: status %d, Retry-After %q; want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	close(release)
	if code := <-done; code != http.StatusOK {
		t.Errorf("first request: status %d, want 200", code)
	}
	go func() { <-entered }()
	rec = httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("after the first finished: status %d, want 200", rec.Code)
	}
}

// The servers ghostd runs carry read, write and idle timeouts and a header
// limit: a client holding a connection open cannot pin it for ever.
func TestServeSetsTimeouts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ServeListeners(ctx, http.NotFoundHandler(), []net.Listener{l}, "", nil) }()
	defer func() { cancel(); <-errc }()
	// A request whose headers exceed MaxHeaderBytes is refused.
	req, _ := http.NewRequest(http.MethodGet, "http://"+l.Addr().String()+"/", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 2*MaxHeaderBytes))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized headers: status %d, want 431", resp.StatusCode)
	}
}
