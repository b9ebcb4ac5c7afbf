package exporter

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/internal/yamlconf"
	"github.com/ghostd/ghostd/probe"
)

// DefaultOwnersTopK is how many owners ghostd_ghost_sessions_by_owner
// names before it adds the rest up under "other".
const DefaultOwnersTopK = 20

// MaxOwnersTopK bounds the cap a configuration may set.
const MaxOwnersTopK = 1000

// MetricsConfig is the `metrics:` section of ghostd.yml: the bounds of
// the metrics whose label values ghostd does not choose itself.
type MetricsConfig struct {
	// OwnersTopK is how many owners ghostd_ghost_sessions_by_owner names;
	// the others count under "other".
	OwnersTopK int `yaml:"owners_top_k"`
}

// DefaultMetricsConfig returns the defaults: 20 owners.
func DefaultMetricsConfig() MetricsConfig { return MetricsConfig{OwnersTopK: DefaultOwnersTopK} }

// UnmarshalYAML decodes a `metrics:` section onto c strictly: keys it
// leaves out keep c's values, unknown keys are errors (*yamlconf.KeyError).
func (c *MetricsConfig) UnmarshalYAML(n *yaml.Node) error {
	type plain MetricsConfig
	return yamlconf.Decode(n, (*plain)(c))
}

// Validate reports a cap out of range as a *yamlconf.KeyError.
func (c MetricsConfig) Validate() error {
	if c.OwnersTopK < 1 || c.OwnersTopK > MaxOwnersTopK {
		return fmt.Errorf("exporter: %w", yamlconf.Errorf("owners_top_k", "must be 1 to %d, got %d", MaxOwnersTopK, c.OwnersTopK))
	}
	return nil
}

// SetEvents sets the event history that /api/v1/events, the page and the
// ghostd_events_* metrics show; nil (the default) shows none.
func (s *Store) SetEvents(r *events.Recorder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = r
}

// SetOwnersTopK sets how many owners ghostd_ghost_sessions_by_owner names
// (at least 1); the others count under "other".
func (s *Store) SetOwnersTopK(k int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ownersTopK = max(k, 1)
}

func (s *Store) recorder() *events.Recorder {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.events
}

// parseEventQuery reads /api/v1/events's query: since (a sequence number
// or an RFC 3339 time), netns, owner, verdict and kind (repeatable), limit.
func parseEventQuery(r *http.Request) (events.Query, string) {
	q := r.URL.Query()
	eq := events.Query{Netns: q["netns"], Owners: q["owner"], Verdicts: q["verdict"]}
	if n := len(q["netns"]) + len(q["owner"]) + len(q["verdict"]) + len(q["kind"]); n > MaxFilterValues {
		return eq, "too many filter values (" + strconv.Itoa(n) + " > " + strconv.Itoa(MaxFilterValues) + ")"
	}
	if v := q.Get("since"); v != "" {
		eq.Forward = true
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			eq.SinceSeq = n
		} else if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			eq.SinceTime = t
		} else {
			return eq, "since: want a sequence number or an RFC 3339 time, got " + strconv.Quote(v)
		}
	}
	for _, v := range eq.Verdicts {
		switch probe.Verdict(v) {
		case probe.Unprobed, probe.Alive, probe.Reset, probe.Silent, probe.Unreachable:
		default:
			return eq, "unknown verdict " + strconv.Quote(v)
		}
	}
	for _, v := range q["kind"] {
		k, ok := events.ParseKind(v)
		if !ok {
			return eq, "unknown kind " + strconv.Quote(v)
		}
		eq.Kinds = append(eq.Kinds, k)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > events.MaxLimit {
			return eq, "limit: want 1 to " + strconv.Itoa(events.MaxLimit) + ", got " + strconv.Quote(v)
		}
		eq.Limit = n
	}
	return eq, ""
}

func serveEvents(w http.ResponseWriter, r *http.Request, s *Store, log *slog.Logger) {
	q, bad := parseEventQuery(r)
	if bad != "" {
		writeError(w, http.StatusBadRequest, bad, log)
		return
	}
	rec := s.recorder()
	if rec == nil {
		writeError(w, http.StatusNotFound, "this process keeps no event history", log)
		return
	}
	writeJSON(w, http.StatusOK, rec.Query(q), log)
}

// GroupsDocument is the answer of /api/v1/groups and of `ghostd scan --by
// ... --json`.
type GroupsDocument struct {
	ScannedAt time.Time `json:"scanned_at"`
	By        GroupBy   `json:"by"`
	Groups    []Group   `json:"groups"`
}

// serveGroups groups every session of the last scan by owner or
// destination (by=, default owner), narrowed by netns= (repeatable).
func serveGroups(w http.ResponseWriter, r *http.Request, s *Store, log *slog.Logger) {
	q := r.URL.Query()
	by := ByOwner
	if v := q.Get("by"); v != "" {
		var ok bool
		if by, ok = ParseGroupBy(v); !ok {
			writeError(w, http.StatusBadRequest, "by: want owner or destination, got "+strconv.Quote(v), log)
			return
		}
	}
	f := sessionFilter{netns: q["netns"]}
	if len(f.netns) > MaxFilterValues {
		writeError(w, http.StatusBadRequest, "too many filter values", log)
		return
	}
	snap := lastSnapshot(w, s, log)
	if snap == nil {
		return
	}
	g := NewGrouper(by)
	snap.sessions().EachSession(func(batch []Session) bool {
		for i := range batch {
			if f.match(&batch[i]) {
				g.Add(&batch[i])
			}
		}
		return r.Context().Err() == nil
	})
	writeJSON(w, http.StatusOK, GroupsDocument{ScannedAt: snap.Doc.ScannedAt, By: by, Groups: g.Groups()}, log)
}

// collectEvents exports the event counters; the store's lock is held.
func (c *collector) collectEvents(ch chan<- prometheus.Metric) {
	if c.s.events == nil {
		return
	}
	st := c.s.events.Stats()
	for i, k := range events.Kinds {
		ch <- constMetric(c.eventsTotal, prometheus.CounterValue, float64(st.Recorded[i]), string(k))
	}
	ch <- constMetric(c.eventsDropped, prometheus.CounterValue, float64(st.Evicted), "ring")
	ch <- constMetric(c.eventsDropped, prometheus.CounterValue, float64(st.FileDropped), "file")
}

// maxPageGroups and maxPageEvents bound the page's group and event tables.
const (
	maxPageGroups = 10
	maxPageEvents = 20
)

type pageGroup struct {
	Name                     string
	Ghosts, Suspects, Killed int
}

type pageEvent struct {
	Seq                              uint64
	Time, Kind, Netns, Local, Remote string
	Verdict, Owner, Result           string
	Bad                              bool
}

// addGroups groups the page's rows (ghosts first, at most maxPageRows) by
// owner and by destination; /api/v1/groups counts every session.
func addGroups(d *pageData, rows []Session) {
	for _, g := range GroupSessions(rows, ByOwner) {
		if len(d.Owners) == maxPageGroups {
			break
		}
		d.Owners = append(d.Owners, pageGroup{Name: g.Owner, Ghosts: g.Ghosts, Suspects: g.Suspects, Killed: g.Killed})
	}
	for _, g := range GroupSessions(rows, ByDestination) {
		if len(d.Destinations) == maxPageGroups {
			break
		}
		name := g.Destination + " port " + strconv.Itoa(int(g.Port))
		if g.PortSide == PortLocal {
			name = g.Destination + " → local port " + strconv.Itoa(int(g.Port))
		}
		d.Destinations = append(d.Destinations, pageGroup{Name: name, Ghosts: g.Ghosts, Suspects: g.Suspects, Killed: g.Killed})
	}
}

// addEvents puts the last events on the page, newest first.
func addEvents(d *pageData, rec *events.Recorder) {
	if rec == nil {
		return
	}
	d.HasEvents = true
	p := rec.Query(events.Query{Limit: maxPageEvents})
	for i := len(p.Events) - 1; i >= 0; i-- {
		e := &p.Events[i]
		result := e.Result
		if e.Detail != "" {
			result += ": " + e.Detail
		}
		d.Events = append(d.Events, pageEvent{
			Seq: e.Seq, Time: e.Time.UTC().Format(time.RFC3339), Kind: string(e.Kind), Netns: e.Netns,
			Local: e.Local, Remote: e.Remote, Verdict: e.Verdict, Owner: e.Owner(), Result: result,
			Bad: e.Kind == events.Ghost || (e.Kind == events.Killed && e.Result != events.ResultOK),
		})
	}
}
