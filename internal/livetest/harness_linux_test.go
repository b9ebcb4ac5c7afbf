package livetest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

var (
	buildOnce sync.Once
	binDir    string
	ghostdBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildGhostd builds cmd/ghostd once per test binary.
func buildGhostd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		if binDir, buildErr = os.MkdirTemp("", "ghostd-livetest-"); buildErr != nil {
			return
		}
		ghostdBin = filepath.Join(binDir, "ghostd")
		out, err := exec.Command(goBin, "build", "-o", ghostdBin, "github.com/ghostd/ghostd/cmd/ghostd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ghostd: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return ghostdBin
}

// needRoot skips the test unless it runs as root, saying what for.
func needRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: " + what)
	}
}

// ghost connects through n and makes the connection a ghost: its client
// end loses its state behind the router. The server end's keepalive is off
// (Go turns it on for accepted connections, and the kernel's own probe would
// find the ghost first and reset it), and it stays referenced until the
// test ends so no finalizer closes it (testnet closes both ends at cleanup).
func ghost(t *testing.T, n *testnet.Net, network string) (server, client net.Conn) {
	t.Helper()
	server, client = n.Pair(t, network)
	t.Cleanup(func() { runtime.KeepAlive(server) })
	if err := server.(*net.TCPConn).SetKeepAlive(false); err != nil {
		t.Fatal(err)
	}
	n.LoseState(t, client)
	return server, client
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs argv inside ns (`ip netns exec` execs it, so the pid is the
// program's own) with output to logPath, and stops it by pid in t.Cleanup:
// SIGTERM, then SIGKILL after 10 s.
func start(t *testing.T, ns *testnet.NS, logPath string, argv ...string) {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) ignored SIGTERM for 10s; killing it", argv[0], cmd.Process.Pid)
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

// nsHTTPClient dials from sockets created inside ns, so the test (in the
// host namespace) reaches listeners on the namespace's loopback.
func nsHTTPClient(ns *testnet.NS) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := ns.Do(func() error {
			var err error
			conn, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}
}

type client struct{ http *http.Client }

func (c *client) get(ctx context.Context, u string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return b, resp.StatusCode, err
}

// poll calls fn every 250 ms until it returns nil or ctx ends.
func poll(ctx context.Context, t *testing.T, what string, fn func() error) {
	t.Helper()
	start := time.Now()
	for {
		err := fn()
		if err == nil {
			t.Logf("%s after %v", what, time.Since(start).Round(100*time.Millisecond))
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: gave up after %v: %v", what, time.Since(start).Round(time.Second), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *client) waitOK(ctx context.Context, t *testing.T, u string) {
	t.Helper()
	poll(ctx, t, u+" ready", func() error {
		_, code, err := c.get(ctx, u)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
}

func (c *client) waitQuery(ctx context.Context, t *testing.T, q string) {
	t.Helper()
	poll(ctx, t, q, func() error {
		res, err := c.query(ctx, q)
		if err == nil && len(res) == 0 {
			err = fmt.Errorf("no result yet")
		}
		return err
	})
}

// apiResponse is the envelope of the Prometheus HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	Error     string          `json:"error"`
	ErrorType string          `json:"errorType"`
	Data      json.RawMessage `json:"data"`
}

func (c *client) api(ctx context.Context, path string, params url.Values, data any) error {
	b, _, err := c.get(ctx, "http://"+promAddr+path+"?"+params.Encode())
	if err != nil {
		return err
	}
	var r apiResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w: %s", path, err, tail(b, 200))
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	return json.Unmarshal(r.Data, data)
}

// query runs an instant query and returns the result's samples (or series
// for a range vector). A NaN sample counts as data: histogram_quantile over
// an interval without observations is NaN, not absent.
func (c *client) query(ctx context.Context, q string) ([]json.RawMessage, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := c.api(ctx, "/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	switch data.ResultType {
	case "vector", "matrix":
		var res []json.RawMessage
		if err := json.Unmarshal(data.Result, &res); err != nil {
			return nil, err
		}
		return res, nil
	case "scalar":
		return []json.RawMessage{data.Result}, nil
	}
	return nil, fmt.Errorf("result type %q", data.ResultType)
}

func (c *client) labelValues(ctx context.Context, selector, label string) ([]string, error) {
	var vals []string
	err := c.api(ctx, "/api/v1/label/"+label+"/values", url.Values{"match[]": {selector}}, &vals)
	return vals, err
}

func (c *client) waitAlert(ctx context.Context, t *testing.T, name, netns string) {
	t.Helper()
	poll(ctx, t, name+" firing", func() error {
		var data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		}
		if err := c.api(ctx, "/api/v1/alerts", nil, &data); err != nil {
			return err
		}
		var seen []string
		for _, a := range data.Alerts {
			if a.Labels["alertname"] == name && a.Labels["netns"] == netns && a.State == "firing" {
				return nil
			}
			seen = append(seen, a.Labels["alertname"]+"/"+a.State)
		}
		return fmt.Errorf("not firing; alerts: %v", seen)
	})
}

// ghostdLines keeps the ghostd_ samples of an exposition.
func ghostdLines(b []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "ghostd_") {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\n"))
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
