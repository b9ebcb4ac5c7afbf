package dashboards

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// GhostdJSON is the committed dashboard, ready to import into Grafana or to
// provision from a file.
//
//go:embed ghostd.json
var GhostdJSON []byte

// Dashboard is the part of a Grafana dashboard model that the tests inspect.
// Unknown fields are ignored: Grafana owns the schema.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Panel is one dashboard panel. Rows carry their collapsed panels in Panels.
type Panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Datasource  *Datasource `json:"datasource"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []Target `json:"targets"`
	Panels  []Panel  `json:"panels"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string      `json:"refId"`
	Datasource   *Datasource `json:"datasource"`
	Expr         string      `json:"expr"`
	LegendFormat string      `json:"legendFormat"`
	Instant      bool        `json:"instant"`
}

// Datasource references a Grafana data source by type and uid; the uid is a
// template such as "${datasource}" in a portable dashboard.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Variable is a template variable. Query is a string in old dashboards and
// an object with a "query" field in new ones; QueryString returns either.
type Variable struct {
	Type       string          `json:"type"`
	Name       string          `json:"name"`
	Datasource *Datasource     `json:"datasource"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	IncludeAll bool            `json:"includeAll"`
	Multi      bool            `json:"multi"`
	AllValue   string          `json:"allValue"`
}

// QueryString returns the variable's query text, whichever form it has.
func (v Variable) QueryString() (string, error) {
	if len(v.Query) == 0 {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v.Query, &s); err == nil {
		return s, nil
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &o); err != nil {
		return "", fmt.Errorf("dashboards: variable %s: query is neither a string nor an object: %w", v.Name, err)
	}
	return o.Query, nil
}

// Query is one PromQL query of a panel, with where it comes from.
type Query struct {
	PanelID    int
	PanelTitle string
	RefID      string
	Expr       string
	Instant    bool
}

func (q Query) String() string {
	return fmt.Sprintf("panel %d %q target %s", q.PanelID, q.PanelTitle, q.RefID)
}

// Parse decodes a dashboard model.
func Parse(b []byte) (*Dashboard, error) {
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("dashboards: decode: %w", err)
	}
	return &d, nil
}

// Ghostd returns the committed ghostd dashboard.
func Ghostd() (*Dashboard, error) { return Parse(GhostdJSON) }

// AllPanels returns every panel, those nested in rows included, rows excluded.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

// Queries returns every panel query in panel order.
func (d *Dashboard) Queries() []Query {
	var out []Query
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			out = append(out, Query{PanelID: p.ID, PanelTitle: p.Title, RefID: t.RefID, Expr: t.Expr, Instant: t.Instant})
		}
	}
	return out
}

// varRef matches Grafana's variable syntaxes: ${name}, ${name:format},
// $name and [[name]].
var varRef = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)

// Expand replaces every template variable in s with its value in vars, as
// Grafana does before sending a query. A variable missing from vars is an
// error, so a typo in a variable name cannot pass unnoticed.
func Expand(s string, vars map[string]string) (string, error) {
	missing := map[string]bool{}
	out := varRef.ReplaceAllStringFunc(s, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		v, ok := vars[name]
		if !ok {
			missing[name] = true
			return m
		}
		return v
	})
	if len(missing) > 0 {
		names := make([]string, 0, len(missing))
		for n := range missing {
			names = append(names, "$"+n)
		}
		sort.Strings(names)
		return "", fmt.Errorf("dashboards: undefined variables %s in %q", strings.Join(names, ", "), s)
	}
	return out, nil
}

// labelValues matches a Prometheus variable query label_values(selector, label).
var labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*(\w+)\s*\)\s*$`)

// LabelValuesQuery splits a label_values(selector, label) variable query.
// ok is false for any other form.
func LabelValuesQuery(q string) (selector, label string, ok bool) {
	m := labelValues.FindStringSubmatch(q)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}
