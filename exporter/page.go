package exporter

import (
	_ "embed"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed page.html
var pageHTML string

var pageTmpl = template.Must(template.New("page").Parse(pageHTML))

// maxPageRows bounds the session table; the JSON API has every session.
const maxPageRows = 500

type pageData struct {
	Scanned                   bool
	ScannedAt, ScanAge        string
	ScanTook, ProbeMode       string
	Version                   string
	Ghosts, Suspects, Sockets int
	Namespaces                []pageNamespace
	Rows                      []pageRow
	Total                     int
	Truncated                 bool
	Paths                     []Path // path idle-timeout estimates (paths.go)

	// Owners and Destinations group the rows shown (history.go).
	Owners, Destinations []pageGroup
	// Events are the last events, newest first; HasEvents says whether
	// the process keeps any.
	Events    []pageEvent
	HasEvents bool
}

type pageNamespace struct {
	Name, Kind, Err, Took     string
	Sockets, Suspects, Ghosts int
}

type pageRow struct {
	Netns, Local, Remote, State, Reasons, Verdict string
	Idle, GhostFor, Process, Unit, Kernel         string
	Ghost, Killed, ClosedByProbe                  bool
	HostHint                                      string // host_hint of a silent peer
}

func servePage(w http.ResponseWriter, _ *http.Request, s *Store, log *slog.Logger) {
	data := buildPage(s.Snapshot(), s.build, s.now())
	addEvents(data, s.recorder())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := pageTmpl.Execute(w, data); err != nil {
		log.Debug("render page", "err", err)
	}
}

func buildPage(snap *Snapshot, b BuildInfo, now time.Time) *pageData {
	d := &pageData{Version: b.Version}
	if snap == nil {
		return d
	}
	d.Scanned = true
	d.ScannedAt, d.ScanAge = "at an unknown time", "?"
	if !snap.Doc.ScannedAt.IsZero() {
		d.ScannedAt = snap.Doc.ScannedAt.UTC().Format(time.RFC3339)
		d.ScanAge = humanSeconds(now.Sub(snap.Doc.ScannedAt).Seconds())
	}
	d.ScanTook = snap.ScanDuration.Round(time.Millisecond).String()
	d.ProbeMode = snap.ProbeMode
	if d.ProbeMode == "" {
		d.ProbeMode = "unknown"
	}

	byName := map[string]*pageNamespace{}
	ns := func(name string) *pageNamespace {
		if n, ok := byName[name]; ok {
			return n
		}
		n := &pageNamespace{Name: name}
		byName[name] = n
		return n
	}
	for _, st := range snap.Doc.Namespaces {
		n := ns(st.Netns)
		n.Kind, n.Err, n.Sockets = st.Kind, st.Error, st.Sockets
		if st.Duration > 0 {
			n.Took = st.Duration.Round(100 * time.Microsecond).String()
		}
	}
	for _, n := range byName {
		d.Sockets += n.Sockets
	}

	for _, sum := range snap.summary() {
		n := ns(sum.Netns)
		n.Suspects += sum.Sessions
		n.Ghosts += sum.GhostCount()
		d.Suspects += sum.Sessions
		d.Ghosts += sum.GhostCount()
	}
	d.Total = d.Suspects
	rows := snap.sessions().TopSessions(maxPageRows)
	for _, ss := range rows {
		d.Rows = append(d.Rows, pageRow{
			Netns:    ss.Netns,
			Local:    ss.Local,
			Remote:   ss.Remote,
			State:    ss.State,
			Reasons:  strings.Join(ss.Reasons, ", "),
			Verdict:  ss.VerdictText(),
			Idle:     humanSeconds(ss.IdleSeconds),
			GhostFor: ghostFor(&ss),
			Kernel:   KernelDeadline(&ss, humanSeconds),
			Process:  process(&ss),
			Unit:     unitOrContainer(&ss),
			Ghost:    ss.Ghost,
			Killed:   ss.Killed,

			ClosedByProbe: ss.ClosedByProbe,
			HostHint:      ss.HostHint,
		})
	}
	d.Truncated = d.Total > len(d.Rows)
	d.Paths = pagePaths(snap)
	addGroups(d, rows)
	for _, n := range byName {
		d.Namespaces = append(d.Namespaces, *n)
	}
	sort.Slice(d.Namespaces, func(i, j int) bool {
		a, b := d.Namespaces[i], d.Namespaces[j]
		if a.Ghosts != b.Ghosts {
			return a.Ghosts > b.Ghosts
		}
		return a.Name < b.Name
	})
	return d
}

// KernelDeadline renders a session's kernel deadline with format:
// "≥ 1h 58m" for a lower bound (keepalive), "~15m 24s" for an estimate
// (retransmissions), "never", or "?" when it cannot be told.
func KernelDeadline(s *Session, format func(sec float64) string) string {
	switch {
	case s.KernelDeadlineSeconds != nil && s.KernelDeadlineLowerBound:
		return "≥" + format(*s.KernelDeadlineSeconds)
	case s.KernelDeadlineSeconds != nil && s.KernelDeadlineBasis == "time_wait":
		return format(*s.KernelDeadlineSeconds)
	case s.KernelDeadlineSeconds != nil:
		return "~" + format(*s.KernelDeadlineSeconds)
	case s.KernelDeadlineBasis == "none" || s.KernelDeadlineBasis == "zero_window":
		return "never"
	}
	return "?"
}

func ghostFor(s *Session) string {
	if !s.Ghost || s.GhostSeconds <= 0 {
		return ""
	}
	return humanSeconds(s.GhostSeconds)
}

func process(s *Session) string {
	switch {
	case s.PID > 0 && s.Comm != "":
		return s.Comm + " [" + strconv.Itoa(s.PID) + "]"
	case s.PID > 0:
		return "[" + strconv.Itoa(s.PID) + "]"
	}
	return s.Comm
}

func unitOrContainer(s *Session) string {
	c := s.Container
	if s.ContainerName != "" {
		c = s.ContainerName // the runtime's name says more than an id
	}
	switch {
	case s.Unit != "" && c != "":
		return s.Unit + " / " + c
	case s.Unit != "":
		return s.Unit
	}
	return c
}

// humanSeconds formats a duration for people: "45s", "6m 52s", "2h 11m", "3d 4h".
func humanSeconds(sec float64) string {
	if math.IsNaN(sec) || sec < 0 {
		return "0s"
	}
	t := int64(sec)
	switch {
	case t < 60:
		if sec < 10 && sec != float64(t) {
			return strconv.FormatFloat(sec, 'f', 1, 64) + "s"
		}
		return fmt.Sprintf("%ds", t)
	case t < 3600:
		return fmt.Sprintf("%dm %ds", t/60, t%60)
	case t < 86400:
		return fmt.Sprintf("%dh %dm", t/3600, t%3600/60)
	}
	return fmt.Sprintf("%dd %dh", t/86400, t%86400/3600)
}
