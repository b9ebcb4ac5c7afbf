package alerts

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/exporter/exportertest"
	"github.com/ghostd/ghostd/podinfo"
)

const runbookPrefix = "https://github.com/ghostd/ghostd/blob/main/docs/runbook.md#"

var ruleFiles = map[string][]byte{"ghostd.rules.yml": Host, "ghostd-fleet.rules.yml": Fleet}

var testFiles = map[string]string{
	"ghostd.rules.yml":       "ghostd.rules_test.yml",
	"ghostd-fleet.rules.yml": "ghostd-fleet.rules_test.yml",
}

// promtool returns the path of Debian's promtool. `make deps` installs it,
// so as root (CI) its absence is a failure, not a reason to skip.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("promtool not found (install Debian's prometheus package: make deps): %v", err)
		}
		t.Skipf("needs promtool (make deps, as root): %v", err)
	}
	return p
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolCheckRules(t *testing.T) {
	out := runPromtool(t, "check", "rules", "ghostd.rules.yml", "ghostd-fleet.rules.yml")
	if strings.Count(out, "SUCCESS") != 2 {
		t.Errorf("promtool check rules: want SUCCESS for both files:\n%s", out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	out := runPromtool(t, "test", "rules", "ghostd.rules_test.yml", "ghostd-fleet.rules_test.yml")
	if strings.Count(out, "SUCCESS") != 2 {
		t.Errorf("promtool test rules: want SUCCESS for both files:\n%s", out)
	}
}

// anchors returns the GitHub heading anchors of a Markdown file.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		out[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
	}
	return out
}

func TestRulesLint(t *testing.T) {
	runbook := anchors(t, "../docs/runbook.md")
	promql := parser.NewParser(parser.Options{})
	seen := map[string]string{}
	for name, b := range ruleFiles {
		f, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(f.Groups) == 0 {
			t.Errorf("%s: no groups", name)
		}
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				id := r.Alert + r.Record
				where := name + ": " + id
				if (r.Alert == "") == (r.Record == "") {
					t.Errorf("%s: rule must be exactly one of alert or record", where)
				}
				if prev, dup := seen[id]; dup {
					t.Errorf("%s: name also used in %s", where, prev)
				}
				seen[id] = name
				if _, err := promql.ParseExpr(r.Expr); err != nil {
					t.Errorf("%s: expr: %v", where, err)
				}
				if r.For != "" {
					if _, err := model.ParseDuration(r.For); err != nil {
						t.Errorf("%s: for: %v", where, err)
					}
				}
				if r.Record != "" {
					// level:metric:operations, as the Prometheus naming guide asks.
					if strings.Count(r.Record, ":") != 2 {
						t.Errorf("%s: recording rule name is not level:metric:operations", where)
					}
					continue
				}
				switch r.Labels["severity"] {
				case "info", "warning", "critical":
				default:
					t.Errorf("%s: severity %q, want info, warning or critical", where, r.Labels["severity"])
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						t.Errorf("%s: no %s annotation", where, a)
					}
				}
				url := r.Annotations["runbook_url"]
				anchor, ok := strings.CutPrefix(url, runbookPrefix)
				if !ok || !runbook[anchor] {
					t.Errorf("%s: runbook_url %q is not %s<a heading of docs/runbook.md>", where, url, runbookPrefix)
				}
				if anchor != strings.ToLower(r.Alert) {
					t.Errorf("%s: runbook_url anchor %q, want the alert's own section %q", where, anchor, strings.ToLower(r.Alert))
				}
			}
		}
	}
}

// testFile is the part of a promtool test file that says which alerts are
// tested and how.
type testFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertTestedBothWays: each alert has a case where it fires and a
// case where it must stay quiet. Fleet alerts must fire per cluster.
func TestEveryAlertTestedBothWays(t *testing.T) {
	for ruleName, testName := range testFiles {
		rules, err := Parse(ruleFiles[ruleName])
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(testName)
		if err != nil {
			t.Fatal(err)
		}
		var tf testFile
		if err := yaml.Unmarshal(b, &tf); err != nil {
			t.Fatalf("%s: %v", testName, err)
		}
		if diff := cmp.Diff([]string{ruleName}, tf.RuleFiles); diff != "" {
			t.Errorf("%s rule_files (-want +got):\n%s", testName, diff)
		}
		firing, quiet := map[string]bool{}, map[string]bool{}
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) == 0 {
					quiet[a.Alertname] = true
					continue
				}
				firing[a.Alertname] = true
				for _, e := range a.ExpAlerts {
					if strings.Contains(ruleName, "fleet") && e.ExpLabels["cluster"] == "" {
						t.Errorf("%s: %s at %s fires without a cluster label", testName, a.Alertname, a.EvalTime)
					}
				}
			}
		}
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				if !firing[r.Alert] {
					t.Errorf("%s: no case where %s fires", testName, r.Alert)
				}
				if !quiet[r.Alert] {
					t.Errorf("%s: no case where %s stays quiet", testName, r.Alert)
				}
			}
		}
	}
}

func TestWithFor(t *testing.T) {
	for name, b := range ruleFiles {
		short, err := WithFor(b, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		orig, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(short)
		if err != nil {
			t.Fatalf("%s: shortened copy: %v", name, err)
		}
		// Only the for: values change.
		for gi := range orig.Groups {
			for ri := range orig.Groups[gi].Rules {
				if orig.Groups[gi].Rules[ri].For != "" {
					orig.Groups[gi].Rules[ri].For = "5s"
				}
			}
		}
		if diff := cmp.Diff(orig, got); diff != "" {
			t.Errorf("%s: WithFor changed more than for: (-want +got):\n%s", name, diff)
		}
		if !bytes.Contains(short, []byte("# ")) {
			t.Errorf("%s: WithFor dropped the comments", name)
		}
		if _, err := exec.LookPath("promtool"); err == nil {
			path := t.TempDir() + "/" + name
			if err := os.WriteFile(path, short, 0o644); err != nil {
				t.Fatal(err)
			}
			runPromtool(t, "check", "rules", path)
		}
	}
	if _, err := WithFor([]byte("groups: []\n"), time.Second); err == nil {
		t.Error("WithFor on a file without for: succeeded, want an error")
	}
}

// TestRulesUseExportedMetrics checks every ghostd_ series the rules select,
// and every label they match or group on, against the exporter's golden
// expositions and what podinfo's resolver exports (ghostd_runtime_up): a
// renamed metric must break this test, not an alert that then never fires.
func TestRulesUseExportedMetrics(t *testing.T) {
	exported := exportertest.Series(t, "../exporter/testdata/*.prom")
	// The resolver reports an endpoint it was given even while its socket
	// is absent (as down), so this needs no runtime.
	res, err := podinfo.New(nil, podinfo.Options{Endpoints: []string{t.TempDir() + "/containerd.sock"}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(res)
	fams, err := reg.Gather()
	if err != nil || len(fams) == 0 {
		t.Fatalf("podinfo resolver: %d families, %v", len(fams), err)
	}
	for _, fam := range fams {
		labels := map[string]bool{}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		exported[fam.GetName()] = labels
	}
	// Labels the scrape or the fleet setup adds, and the metric name.
	added := map[string]bool{"job": true, "instance": true, "cluster": true, "node": true, "__name__": true}
	promql := parser.NewParser(parser.Options{})
	for name, b := range ruleFiles {
		f, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				expr, err := promql.ParseExpr(r.Expr)
				if err != nil {
					t.Fatal(err)
				}
				parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
					vs, ok := node.(*parser.VectorSelector)
					if !ok || !strings.HasPrefix(vs.Name, "ghostd_") {
						return nil
					}
					labels, ok := exported[vs.Name]
					if !ok {
						t.Errorf("%s: %s%s: %s is not exported", name, r.Alert, r.Record, vs.Name)
						return nil
					}
					for _, m := range vs.LabelMatchers {
						if !labels[m.Name] && !added[m.Name] {
							t.Errorf("%s: %s%s: %s has no label %q", name, r.Alert, r.Record, vs.Name, m.Name)
						}
					}
					return nil
				})
			}
		}
	}
}
