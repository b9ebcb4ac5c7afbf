package dashboards

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// contract lists every metric a dashboard query may use, with its labels
// (docs/design.md "Metrics contract" and the exporter). Histograms appear as
// their _bucket series.
var contract = map[string][]string{
	"ghostd_ghost_sessions":                               {"netns", "family", "verdict"},
	"ghostd_suspect_sessions":                             {"netns", "reason"},
	"ghostd_sockets":                                      {"netns", "family", "state"},
	"ghostd_oldest_ghost_age_seconds":                     {"netns"},
	"ghostd_probes_total":                                 {},
	"ghostd_probe_replies_total":                          {"kind"},
	"ghostd_probe_rtt_seconds_bucket":                     {"le"},
	"ghostd_ghosts_killed_total":                          {"netns", "verdict"},
	"ghostd_kill_errors_total":                            {"netns", "errno"},
	"ghostd_kill_supported":                               {},
	"ghostd_scan_duration_seconds_bucket":                 {"le"},
	"ghostd_last_scan_timestamp_seconds":                  {},
	"ghostd_netns_scan_success":                           {"netns"},
	"ghostd_netns_scan_duration_seconds":                  {"netns"},
	"ghostd_netns_info":                                   {"netns", "netns_inode", "kind"},
	"ghostd_build_info":                                   {"version", "revision", "goversion"},
	"ghostd_config_last_reload_successful":                {},
	"ghostd_probe_mode_info":                              {"mode"},
	"ghostd_capability":                                   {"capability"},
	"ghostd_config_last_reload_success_timestamp_seconds": {},
	"ghostd_pod_info":                                     {"netns", "k8s_namespace", "pod"},
	"ghostd_ghost_sessions_by_owner":                      {"owner"},
	"ghostd_events_total":                                 {"kind"},
	"ghostd_events_dropped_total":                         {"where"},
}

// promql parses queries with the default options, as Prometheus does.
var promql = parser.NewParser(parser.Options{})

// parseQuery expands a query's variables to vars and parses it.
func parseQuery(query string, vars map[string]string) (parser.Expr, error) {
	expr, err := Expand(query, vars)
	if err != nil {
		return nil, err
	}
	root, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", expr, err)
	}
	return root, nil
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// Sentinel values for the variables: distinct from anything a query could
// spell out literally, so the AST check proves the variable was used.
const (
	sentinelJob      = "SENTINEL_JOB"
	sentinelInstance = "SENTINEL_INSTANCE"
	sentinelNetns    = "SENTINEL_NETNS"
	sentinelK8sNS    = "SENTINEL_K8S_NAMESPACE"
	sentinelPod      = "SENTINEL_POD"
	sentinelRange    = 273 * time.Second // $__rate_interval as 4m33s
)

var sentinelVars = map[string]string{
	"job": sentinelJob, "instance": sentinelInstance, "netns": sentinelNetns,
	"k8s_namespace": sentinelK8sNS, "pod": sentinelPod,
	"__rate_interval": "4m33s", "__interval": "4m33s", "__range": "4m33s",
	"datasource": "prometheus",
}

// grafanaVars are what Grafana substitutes when "All" is selected.
var grafanaVars = map[string]string{
	"job": ".*", "instance": ".*", "netns": ".*", "k8s_namespace": ".*", "pod": ".*",
	"__rate_interval": "1m", "__interval": "15s", "__range": "6h",
	"datasource": "prometheus",
}

func load(t *testing.T) *Dashboard {
	t.Helper()
	d, err := Ghostd()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.AllPanels()) == 0 {
		t.Fatal("dashboard has no panels")
	}
	return d
}

func TestPanelsHaveUnitDescriptionAndUniqueIDs(t *testing.T) {
	d := load(t)
	ids := map[int]string{}
	for _, p := range d.AllPanels() {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID <= 0 {
			t.Errorf("%s: id must be positive", name)
		}
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("%s: id already used by %q", name, prev)
		}
		ids[p.ID] = p.Title
		if p.Title == "" {
			t.Errorf("%s: no title", name)
		}
		if p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("%s: no fieldConfig.defaults.unit", name)
		}
		if len(strings.TrimSpace(p.Description)) < 20 {
			t.Errorf("%s: description %q is missing or too short to help anyone", name, p.Description)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no queries", name)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: refId %q empty or repeated", name, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
}

func TestPanelsUseTemplatedDatasource(t *testing.T) {
	d := load(t)
	want := &Datasource{Type: "prometheus", UID: "${datasource}"}
	for _, p := range d.AllPanels() {
		if diff := cmp.Diff(want, p.Datasource); diff != "" {
			t.Errorf("panel %d %q datasource (-want +got):\n%s", p.ID, p.Title, diff)
		}
		for _, tg := range p.Targets {
			if diff := cmp.Diff(want, tg.Datasource); diff != "" {
				t.Errorf("panel %d %q target %s datasource (-want +got):\n%s", p.ID, p.Title, tg.RefID, diff)
			}
		}
	}
}

func TestGridFitsWithoutOverlap(t *testing.T) {
	d := load(t)
	type cell struct{ x, y int }
	taken := map[cell]int{}
	for _, p := range d.AllPanels() {
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %d %q: gridPos %+v outside the 24-column grid", p.ID, p.Title, g)
			continue
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panel %d %q overlaps panel %d at (%d,%d)", p.ID, p.Title, other, x, y)
					goto next
				}
				taken[cell{x, y}] = p.ID
			}
		}
	next:
	}
}

func TestVariables(t *testing.T) {
	d := load(t)
	vars := map[string]Variable{}
	var names []string
	for _, v := range d.Templating.List {
		vars[v.Name] = v
		names = append(names, v.Name)
	}
	if diff := cmp.Diff([]string{"datasource", "job", "instance", "netns", "k8s_namespace", "pod"}, names); diff != "" {
		t.Fatalf("variables (-want +got):\n%s", diff)
	}
	ds := vars["datasource"]
	if q, _ := ds.QueryString(); ds.Type != "datasource" || q != "prometheus" {
		t.Errorf("datasource variable: type %q query %q, want a prometheus datasource variable", ds.Type, q)
	}
	// Each query variable must narrow by the variables before it.
	needs := map[string][]string{"job": nil, "instance": {"job"}, "netns": {"job", "instance"},
		"k8s_namespace": {"job", "instance"}, "pod": {"job", "instance", "k8s_namespace"}}
	for name, deps := range needs {
		v := vars[name]
		if v.Type != "query" {
			t.Errorf("$%s: type %q, want query", name, v.Type)
		}
		if diff := cmp.Diff(&Datasource{Type: "prometheus", UID: "${datasource}"}, v.Datasource); diff != "" {
			t.Errorf("$%s datasource (-want +got):\n%s", name, diff)
		}
		// Every query uses =~, so "All" must expand to a regexp, not to Grafana's {a,b} glob.
		if !v.IncludeAll || !v.Multi || v.AllValue != ".*" {
			t.Errorf("$%s: includeAll=%v multi=%v allValue=%q, want true, true, \".*\"", name, v.IncludeAll, v.Multi, v.AllValue)
		}
		q, err := v.QueryString()
		if err != nil {
			t.Fatal(err)
		}
		sel, label, ok := LabelValuesQuery(q)
		if !ok || label != name {
			t.Errorf("$%s: query %q is not label_values(selector, %s)", name, q, name)
			continue
		}
		expanded, err := Expand(sel, sentinelVars)
		if err != nil {
			t.Errorf("$%s: %v", name, err)
			continue
		}
		ms, err := promql.ParseMetricSelector(expanded)
		if err != nil {
			t.Errorf("$%s: selector %q: %v", name, expanded, err)
			continue
		}
		metric := ""
		got := map[string]*labels.Matcher{}
		for _, m := range ms {
			if m.Name == model.MetricNameLabel {
				metric = m.Value
			}
			got[m.Name] = m
		}
		if _, ok := contract[metric]; !ok {
			t.Errorf("$%s: metric %q is not in the metrics contract", name, metric)
		}
		for _, dep := range deps {
			m := got[dep]
			if m == nil || m.Type != labels.MatchRegexp || m.Value != sentinelVars[dep] {
				t.Errorf("$%s: selector %q lacks %s=~\"$%s\"", name, sel, dep, dep)
			}
		}
	}
}

func TestQueriesParseWithGrafanaValues(t *testing.T) {
	for _, q := range load(t).Queries() {
		if _, err := parseQuery(q.Expr, grafanaVars); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

// TestQueriesAST checks every query through its syntax tree: every series
// selector is narrowed by $job and $instance (and by $netns where the metric
// has a netns label), names a metric of the contract, groups only by labels
// the metric has, and every range is $__rate_interval, taken only of counters.
func TestQueriesAST(t *testing.T) {
	queries := load(t).Queries()
	for _, q := range queries {
		root, err := parseQuery(q.Expr, sentinelVars)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		for _, problem := range checkAST(root) {
			t.Errorf("%s: %s\n\tquery: %s", q, problem, q.Expr)
		}
	}
}

// TestCheckASTCatchesMistakes keeps the checker honest: each of these
// queries has one mistake the dashboard must never contain.
func TestCheckASTCatchesMistakes(t *testing.T) {
	tests := []struct {
		name, expr, want string
	}{
		{"fine", `sum by (netns) (rate(ghostd_ghosts_killed_total{job=~"$job", instance=~"$instance", netns=~"$netns"}[$__rate_interval]))`, ""},
		{"no job", `ghostd_probes_total{instance=~"$instance"}`, `lacks job=~"$job"`},
		{"job literal", `ghostd_probes_total{job=~".*", instance=~"$instance"}`, `lacks job=~"$job"`},
		{"job equality", `ghostd_probes_total{job="$job", instance=~"$instance"}`, `lacks job=~"$job"`},
		{"no instance", `ghostd_probes_total{job=~"$job"}`, `lacks instance=~"$instance"`},
		{"no netns", `ghostd_sockets{job=~"$job", instance=~"$instance"}`, `lacks netns=~"$netns"`},
		{"fixed range", `rate(ghostd_probes_total{job=~"$job", instance=~"$instance"}[5m])`, "range 5m"},
		{"rate of gauge", `rate(ghostd_sockets{job=~"$job", instance=~"$instance", netns=~"$netns"}[$__rate_interval])`, "not a counter"},
		{"unknown metric", `ghostd_ghosts{job=~"$job", instance=~"$instance"}`, "not in the metrics contract"},
		{"bad grouping", `sum by (pid) (ghostd_ghost_sessions{job=~"$job", instance=~"$instance", netns=~"$netns"})`, `label "pid"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, err := parseQuery(tt.expr, sentinelVars)
			if err != nil {
				t.Fatal(err)
			}
			problems := strings.Join(checkAST(root), "\n")
			if tt.want == "" && problems != "" || !strings.Contains(problems, tt.want) {
				t.Errorf("problems %q, want one containing %q", problems, tt.want)
			}
		})
	}
}

func checkAST(root parser.Expr) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	parser.Inspect(root, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			byName := map[string]*labels.Matcher{}
			for _, m := range n.LabelMatchers {
				byName[m.Name] = m
			}
			metricLabels, known := contract[n.Name]
			if !known && n.Name != "up" {
				add("metric %q is not in the metrics contract", n.Name)
			}
			want := map[string]string{"job": sentinelJob, "instance": sentinelInstance}
			for _, l := range metricLabels {
				switch l {
				case "netns":
					want["netns"] = sentinelNetns
				case "k8s_namespace":
					want["k8s_namespace"] = sentinelK8sNS
				case "pod":
					want["pod"] = sentinelPod
				}
			}
			for _, l := range []string{"job", "instance", "netns", "k8s_namespace", "pod"} {
				v, ok := want[l]
				if !ok {
					continue
				}
				if m := byName[l]; m == nil || m.Type != labels.MatchRegexp || m.Value != v {
					add("selector %s lacks %s=~\"$%s\"", n.Name, l, l)
				}
			}
		case *parser.MatrixSelector:
			if n.Range != sentinelRange {
				add("range %s, want $__rate_interval", n.Range)
			}
		case *parser.Call:
			switch n.Func.Name {
			case "rate", "increase", "irate", "resets":
				for _, vs := range selectors(n) {
					if !isCounter(vs.Name) {
						add("%s(%s): not a counter (_total, _bucket, _count or _sum)", n.Func.Name, vs.Name)
					}
				}
			}
		case *parser.AggregateExpr:
			if n.Without {
				add("aggregation uses without(); group with by() so the legend is stable")
			}
			names := map[string]bool{}
			for _, vs := range selectors(n.Expr) {
				names[vs.Name] = true
			}
			if len(names) != 1 {
				break
			}
			for name := range names {
				have := append(append([]string{}, targetLabels...), contract[name]...)
				for _, g := range n.Grouping {
					if !slices.Contains(have, g) {
						add("%s by (%s): metric %s has no label %q", n.Op, strings.Join(n.Grouping, ", "), name, g)
					}
				}
			}
		}
		return nil
	})
	sort.Strings(problems)
	return problems
}

func selectors(e parser.Node) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

func isCounter(name string) bool {
	for _, s := range []string{"_total", "_bucket", "_count", "_sum"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"job": "J", "instance": "I", "__rate_interval": "1m"}
	tests := []struct {
		in, want, err string
	}{
		{in: `up{job=~"$job"}`, want: `up{job=~"J"}`},
		{in: `up{job=~"${job}", instance=~"${instance:regex}"}`, want: `up{job=~"J", instance=~"I"}`},
		{in: `rate(x[$__rate_interval])`, want: `rate(x[1m])`},
		{in: `up{job=~"[[job]]"}`, want: `up{job=~"J"}`},
		{in: `up{job=~"$jobs"}`, err: "undefined variables $jobs"},
		{in: `up{job=~"$job", netns=~"$netns"}`, err: "undefined variables $netns"},
		{in: `up`, want: `up`},
	}
	for _, tt := range tests {
		got, err := Expand(tt.in, vars)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Expand(%q): error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Expand(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Expand(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}
