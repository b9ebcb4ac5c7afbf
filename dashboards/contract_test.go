package dashboards

import (
	"regexp"
	"slices"
	"sort"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/ghostd/ghostd/exporter/exportertest"
)

// TestQueriesCoverTheContract keeps the dashboard in step with the metrics
// contract: every metric a user needs to see is on a panel.
func TestQueriesCoverTheContract(t *testing.T) {
	used := map[string]bool{}
	for _, q := range load(t).Queries() {
		root, err := parseQuery(q.Expr, sentinelVars)
		if err != nil {
			t.Fatal(err)
		}
		for _, vs := range selectors(root) {
			used[vs.Name] = true
		}
	}
	// Metrics that are only labels for the variables or timestamps of other panels.
	notOnPanels := map[string]bool{"ghostd_netns_info": true, "ghostd_config_last_reload_success_timestamp_seconds": true}
	var missing []string
	for name := range contract {
		if !used[name] && !notOnPanels[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metrics on no panel: %v", missing)
	}
}

// TestContractMatchesExporter checks the contract above against the
// exporter's golden expositions, so a renamed metric or label breaks this
// test rather than a user's dashboard.
func TestContractMatchesExporter(t *testing.T) {
	exported := exportertest.Series(t, "../exporter/testdata/*.prom") // series name -> label names
	for name, want := range contract {
		got, ok := exported[name]
		if !ok {
			t.Errorf("%s: not exported (exporter/testdata/*.prom)", name)
			continue
		}
		for _, l := range want {
			if !got[l] {
				t.Errorf("%s: the exporter has no label %q", name, l)
			}
		}
	}
}

// outputLabels returns the labels a query's result series carry, when the
// query ends in an aggregation; ok is false when that cannot be told.
func outputLabels(e parser.Expr) (labels []string, ok bool) {
	switch n := e.(type) {
	case *parser.ParenExpr:
		return outputLabels(n.Expr)
	case *parser.AggregateExpr:
		switch n.Op {
		case parser.TOPK, parser.BOTTOMK:
			return outputLabels(n.Expr)
		}
		if n.Without {
			return nil, false
		}
		return n.Grouping, true
	case *parser.Call:
		if n.Func.Name == "histogram_quantile" && len(n.Args) == 2 {
			ls, ok := outputLabels(n.Args[1])
			var out []string
			for _, l := range ls {
				if l != "le" {
					out = append(out, l)
				}
			}
			return out, ok
		}
		return nil, false
	case *parser.BinaryExpr:
		if n.LHS.Type() == parser.ValueTypeVector {
			return outputLabels(n.LHS)
		}
		return outputLabels(n.RHS)
	}
	return nil, false
}

var legendRef = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// TestLegendsNameOutputLabels: a legend may only name labels the query's
// result has, or Grafana shows an empty string.
func TestLegendsNameOutputLabels(t *testing.T) {
	for _, p := range load(t).AllPanels() {
		for _, tg := range p.Targets {
			root, err := parseQuery(tg.Expr, sentinelVars)
			if err != nil {
				t.Fatal(err)
			}
			have, ok := outputLabels(root)
			if !ok {
				t.Errorf("panel %d %q target %s: the result's labels cannot be told; end the query in an aggregation with by()", p.ID, p.Title, tg.RefID)
				continue
			}
			for _, m := range legendRef.FindAllStringSubmatch(tg.LegendFormat, -1) {
				if !slices.Contains(have, m[1]) {
					t.Errorf("panel %d %q target %s: legend names {{%s}}, the result has only %v", p.ID, p.Title, tg.RefID, m[1], have)
				}
			}
		}
	}
}
