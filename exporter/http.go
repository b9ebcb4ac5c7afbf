package exporter

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// DefaultListenAddress is where ghostd serves HTTP unless told otherwise.
const DefaultListenAddress = ":10145"

// HandlerOptions configures NewHandler.
type HandlerOptions struct {
	Log *slog.Logger
	// Registry is served on /metrics. It should include the store's
	// Collector and the Go and process collectors; nil serves a registry
	// with only the store's collector.
	Registry *prometheus.Registry
	// MaxHeavy caps the HTML page and /api/v1/sessions requests served at
	// once (each walks every suspect); more get 429. Zero means DefaultMaxHeavy.
	MaxHeavy int
}

// DefaultMaxHeavy is how many page and session requests are served at once.
const DefaultMaxHeavy = 4

// MaxFilterValues caps the values of all filters of one /api/v1/sessions
// request together: each session is compared with each value.
const MaxFilterValues = 64

// streamWriteTimeout is how long /api/v1/sessions waits for the client to
// take one batch of its response before giving up on it.
const streamWriteTimeout = 30 * time.Second

// heavy admits at most cap(h) requests at once; the rest get 429 at once
// rather than queueing behind a slow client.
type heavy chan struct{}

func (h heavy) serve(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case h <- struct{}{}:
			defer func() { <-h }()
			fn(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many concurrent requests", http.StatusTooManyRequests)
		}
	}
}

// NewHandler returns ghostd's HTTP API:
//
//	/metrics            Prometheus metrics
//	/api/v1/sessions    the Document as JSON; filters netns=, verdict=, reason= (repeatable, exact) and ghost=true|false
//	/api/v1/paths       each destination's path idle-timeout estimate (paths.go)
//	/api/v1/events      the event history; since= (sequence number or RFC 3339 time), netns=, owner=, verdict=, kind= (repeatable), limit=
//	/api/v1/groups      ghosts and suspects grouped by=owner|destination; netns= (repeatable)
//	/                   an HTML summary
//	/-/healthy          200 while the process runs
//	/-/ready            503 until the first scan is published, then 200
func NewHandler(s *Store, o HandlerOptions) http.Handler {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(s.Collector())
	}
	maxHeavy := o.MaxHeavy
	if maxHeavy <= 0 {
		maxHeavy = DefaultMaxHeavy
	}
	limit := make(heavy, maxHeavy)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /api/v1/sessions", limit.serve(func(w http.ResponseWriter, r *http.Request) {
		serveSessions(w, r, s, log)
	}))
	mux.HandleFunc("GET /api/v1/paths", func(w http.ResponseWriter, _ *http.Request) { servePaths(w, s, log) })
	mux.HandleFunc("GET /api/v1/events", limit.serve(func(w http.ResponseWriter, r *http.Request) { serveEvents(w, r, s, log) }))
	mux.HandleFunc("GET /api/v1/groups", limit.serve(func(w http.ResponseWriter, r *http.Request) { serveGroups(w, r, s, log) }))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("OK\n"))
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: no scan completed yet\n"))
			return
		}
		_, _ = w.Write([]byte("OK\n"))
	})
	mux.HandleFunc("GET /{$}", limit.serve(func(w http.ResponseWriter, r *http.Request) {
		servePage(w, r, s, log)
	}))
	return mux
}

// sessionFilter is the parsed query of /api/v1/sessions.
type sessionFilter struct {
	netns, verdicts, reasons []string
	ghost                    *bool
}

func parseFilter(r *http.Request) (sessionFilter, string) {
	q := r.URL.Query()
	f := sessionFilter{netns: q["netns"], verdicts: q["verdict"], reasons: q["reason"]}
	if n := len(f.netns) + len(f.verdicts) + len(f.reasons); n > MaxFilterValues {
		return f, fmt.Sprintf("too many filter values (%d > %d)", n, MaxFilterValues)
	}
	for _, v := range f.verdicts {
		if !probe.Verdict(v).Valid() {
			return f, "unknown verdict " + strconv.Quote(v)
		}
	}
	for _, v := range f.reasons {
		if _, ok := tracker.ParseReason(v); !ok {
			return f, "unknown reason " + strconv.Quote(v)
		}
	}
	if g := q["ghost"]; len(g) > 0 {
		b, err := strconv.ParseBool(g[len(g)-1])
		if err != nil {
			return f, "ghost: want true or false, got " + strconv.Quote(g[len(g)-1])
		}
		f.ghost = &b
	}
	return f, ""
}

func (f *sessionFilter) match(s *Session) bool {
	if len(f.netns) > 0 && !slices.Contains(f.netns, s.Netns) {
		return false
	}
	if len(f.verdicts) > 0 && !slices.Contains(f.verdicts, s.Verdict) {
		return false
	}
	if len(f.reasons) > 0 && !slices.ContainsFunc(s.Reasons, func(r string) bool { return slices.Contains(f.reasons, r) }) {
		return false
	}
	return f.ghost == nil || *f.ghost == s.Ghost
}

func serveSessions(w http.ResponseWriter, r *http.Request, s *Store, log *slog.Logger) {
	f, bad := parseFilter(r)
	if bad != "" {
		writeError(w, http.StatusBadRequest, bad, log)
		return
	}
	snap := lastSnapshot(w, s, log)
	if snap == nil {
		return
	}
	writeDocument(w, snap, &f, log)
}

// writeDocument writes the snapshot's Document, narrowed by f, as JSON: the
// bytes json.Encoder writes for the whole Document, but with the sessions
// encoded a batch at a time, so that a response listing 200 000 sessions
// holds neither them nor their encoding in memory at once. A netns filter
// also narrows the namespace list.
func writeDocument(w http.ResponseWriter, snap *Snapshot, f *sessionFilter, log *slog.Logger) {
	nss := []NamespaceStatus{}
	for _, n := range snap.Doc.Namespaces {
		if len(f.netns) == 0 || slices.Contains(f.netns, n.Netns) {
			nss = append(nss, n)
		}
	}
	at, err := json.Marshal(snap.Doc.ScannedAt)
	var nsJSON []byte
	if err == nil {
		nsJSON, err = json.Marshal(nss)
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error(), log)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(`{"scanned_at":`)
	bw.Write(at)
	bw.WriteString(`,"namespaces":`)
	bw.Write(nsJSON)
	bw.WriteString(`,"sessions":[`)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	first := true
	rc := http.NewResponseController(w)
	snap.sessions().EachSession(func(batch []Session) bool {
		// A response of 200 000 sessions may outlast the server's
		// WriteTimeout: each batch the client takes buys it more time.
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		for i := range batch {
			if !f.match(&batch[i]) {
				continue
			}
			buf.Reset()
			if err = enc.Encode(&batch[i]); err != nil {
				return false
			}
			if !first {
				bw.WriteByte(',')
			}
			first = false
			bw.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
		}
		// A client that went away fails the writes: stop building sessions.
		return bw.Flush() == nil
	})
	bw.WriteString("]}\n")
	if ferr := bw.Flush(); err != nil || ferr != nil {
		log.Debug("write sessions response", "err", errors.Join(err, ferr))
	}
}

// writeError answers code with {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string, log *slog.Logger) {
	writeJSON(w, code, map[string]string{"error": msg}, log)
}

// lastSnapshot returns the last scan's snapshot; before the first scan it
// answers 503 and returns nil.
func lastSnapshot(w http.ResponseWriter, s *Store, log *slog.Logger) *Snapshot {
	snap := s.Snapshot()
	if snap == nil {
		writeError(w, http.StatusServiceUnavailable, "no scan completed yet", log)
	}
	return snap
}

func writeJSON(w http.ResponseWriter, code int, v any, log *slog.Logger) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	if err := enc.Encode(v); err != nil {
		log.Debug("write json response", "err", err)
	}
}

// NewRegistry returns a registry with the store's collector and the Go and
// process collectors, as HandlerOptions.Registry wants it.
func NewRegistry(s *Store) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		s.Collector(),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}
