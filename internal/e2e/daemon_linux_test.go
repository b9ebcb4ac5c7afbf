package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ghostd/ghostd/exporter"
)

// The binaries under test, built once in TestMain: ghostdBin with the race
// detector for the functional tests, ghostdPlainBin without it where memory
// is measured.
var ghostdBin, ghostdPlainBin string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			// Every test here skips without root; don't pay for the build.
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "ghostd-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ghostdBin = filepath.Join(dir, "ghostd-race")
		ghostdPlainBin = filepath.Join(dir, "ghostd")
		for _, b := range [][]string{{"-race", "-o", ghostdBin}, {"-o", ghostdPlainBin}} {
			build := exec.Command("go", append(append([]string{"build"}, b...), "github.com/ghostd/ghostd/cmd/ghostd")...)
			build.Stdout, build.Stderr = os.Stderr, os.Stderr
			if err := build.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: building ghostd:", err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs ghostd against network namespaces it creates")
	}
}

// needRootLong is needRoot for a test that runs for a minute or more: -short
// skips it, saying why it is long.
func needRootLong(t *testing.T, why string) {
	t.Helper()
	needRoot(t)
	if testing.Short() {
		t.Skip(why + "; skipped with -short")
	}
}

// daemon is a running `ghostd run`.
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:PORT
	mu     sync.Mutex
	log    bytes.Buffer
	exited chan struct{}
	err    error
}

var listenRE = regexp.MustCompile(`msg=listening address=(\S+)`)

// startDaemon runs ghostd with the configuration file content cfg (may be
// empty) and args; it listens on a free loopback port, and startDaemon waits
// until the listener is bound.
func startDaemon(t *testing.T, cfg string, args ...string) *daemon {
	t.Helper()
	return startDaemonBin(t, ghostdBin, cfg, args...)
}

// startDaemonBin is startDaemon with a chosen binary.
func startDaemonBin(t *testing.T, bin, cfg string, args ...string) *daemon {
	t.Helper()
	cfgFile := filepath.Join(t.TempDir(), "ghostd.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"run", "--config", cfgFile, "--web.listen-address", "127.0.0.1:0"}, args...)
	d := &daemon{t: t, exited: make(chan struct{})}
	d.cmd = exec.Command(bin, args...)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.log.WriteString(line + "\n")
			d.mu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.stop(5 * time.Second)
		if t.Failed() {
			t.Logf("ghostd log:\n%s", d.logs())
		}
	})
	select {
	case a := <-addrc:
		d.base = "http://" + a
	case <-d.exited:
		t.Fatalf("ghostd exited before listening: %v\n%s", d.err, d.logs())
	case <-time.After(20 * time.Second):
		t.Fatalf("ghostd did not listen within 20s:\n%s", d.logs())
	}
	return d
}

func (d *daemon) logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// stop sends SIGTERM and returns how long the exit took; it kills the
// process (by its pid) if it does not exit within limit.
func (d *daemon) stop(limit time.Duration) (time.Duration, error) {
	select {
	case <-d.exited:
		return 0, d.err
	default:
	}
	start := time.Now()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return time.Since(start), d.err
	case <-time.After(limit):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return time.Since(start), fmt.Errorf("did not exit within %v", limit)
	}
}

func (d *daemon) get(path string) (int, []byte, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(d.base + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (d *daemon) sessions(query string) (exporter.Document, error) {
	var doc exporter.Document
	code, b, err := d.get("/api/v1/sessions" + query)
	if err != nil {
		return doc, err
	}
	if code != http.StatusOK {
		return doc, fmt.Errorf("status %d: %s", code, b)
	}
	return doc, json.Unmarshal(b, &doc)
}

// metrics scrapes /metrics and parses the exposition.
func (d *daemon) metrics() (map[string]*dto.MetricFamily, error) {
	code, b, err := d.get("/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("status %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(b))
}

// value returns the value of the series of family name whose labels include
// want, and whether it exists.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for k, v := range want {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// ready waits, at most limit, until ghostd's first scan is published
// (/-/ready answers 200). A test's deadline for what the daemon finds counts
// from there: a loaded machine stretches start-up and the first scan (the
// owner walk reads every process's fds), not what is being measured.
func (d *daemon) ready(limit time.Duration) {
	d.t.Helper()
	waitFor(d.t, limit, "ghostd ready (first scan published)", func() (bool, string) {
		code, b, err := d.get("/-/ready")
		return err == nil && code == http.StatusOK, fmt.Sprintf("status %d %q %v", code, b, err)
	})
}

// waitFor polls cond every 200 ms until it returns true or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < limit {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		last = state
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v; last state: %s", what, limit, last)
	return 0
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// ghostdOut runs the ghostd under test with args and returns its stdout; it
// fails the test, with ghostd's stderr, when ghostd exits non-zero.
func ghostdOut(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(ghostdBin, args...).Output()
	if err != nil {
		t.Fatalf("ghostd %s: %v\n%s", strings.Join(args, " "), err, exitStderr(err))
	}
	return out
}

// decodeDoc parses `ghostd scan --json` output, failing the test when it is
// not the JSON document.
func decodeDoc(t *testing.T, out []byte) exporter.Document {
	t.Helper()
	var doc exporter.Document
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("not the JSON document: %v\n%s", err, out)
	}
	return doc
}

// scanDoc runs ghostd with args (a `scan --json`) and returns its document
// and its raw output.
func scanDoc(t *testing.T, args ...string) (exporter.Document, []byte) {
	t.Helper()
	out := ghostdOut(t, args...)
	return decodeDoc(t, out), out
}

// setprivCmd is the command that runs bin with args through setpriv
// (util-linux) with privs (its options): with fewer privileges than the
// test's.
func setprivCmd(t *testing.T, privs []string, bin string, args ...string) *exec.Cmd {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is missing: %v", err)
	}
	return exec.Command(setpriv, slices.Concat(privs, []string{"--", bin}, args)...)
}

// setprivScan runs the ghostd under test through setpriv with privs (its
// options) and args (a `scan --json`), and returns the document and what
// ghostd logged.
func setprivScan(t *testing.T, privs []string, args ...string) (exporter.Document, string) {
	t.Helper()
	cmd := setprivCmd(t, privs, ghostdBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("setpriv %s ghostd %s: %v\n%s", strings.Join(privs, " "), strings.Join(args, " "), err, stderr.String())
	}
	return decodeDoc(t, out), stderr.String()
}
