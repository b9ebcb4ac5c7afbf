package systemd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
)

// container is a booted systemd-nspawn machine.
type container struct {
	name string
	init int // the container's PID 1, as the host sees it
	log  string
}

// boot starts systemd-nspawn --boot in the background, with its own network
// namespace (only lo), and stops it in cleanup.
func boot(t *testing.T, root string) *container {
	t.Helper()
	mountNspawnTmpfs(t)
	var b [4]byte
	rand.Read(b[:])
	c := &container{name: "gd-sd-" + hex.EncodeToString(b[:]), log: filepath.Join(t.TempDir(), "console.log")}
	logf, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	// --register=no and --keep-unit: the host's PID 1 is not systemd, so
	// there is no machined and no bus to create a scope on. nspawn's own
	// seccomp filter refuses bpf(2) and pidfd_getfd(2) unless asked: let the
	// container have them, so that the unit's own privileges are what is tested.
	cmd := exec.Command("systemd-nspawn", "--boot", "--quiet", "-D", root, "--machine="+c.name,
		"--register=no", "--keep-unit", "--private-network", "--console=read-only",
		"--capability=CAP_BPF,CAP_PERFMON", "--system-call-filter=bpf pidfd_getfd")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		// SIGTERM makes nspawn shut the container down cleanly.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("container %s did not stop in 30s; killing nspawn %d", c.name, cmd.Process.Pid)
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			data, _ := os.ReadFile(c.log)
			t.Logf("console:\n%s", tail(data, 4000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for c.init == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no systemd child of nspawn %d after 30s", cmd.Process.Pid)
		}
		select {
		case err := <-exited:
			data, _ := os.ReadFile(c.log)
			t.Fatalf("systemd-nspawn exited: %v\n%s", err, tail(data, 3000))
		case <-time.After(100 * time.Millisecond):
		}
		c.init = systemdChild(cmd.Process.Pid)
	}
	return c
}

// systemdChild returns the child of pid named systemd (the container's init).
func systemdChild(pid int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		data, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(data)) {
			child, _ := strconv.Atoi(s)
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", child)); strings.TrimSpace(string(comm)) == "systemd" {
				return child
			}
		}
	}
	return 0
}

// mountNspawnTmpfs mounts a tmpfs on /run/systemd/nspawn, which nspawn needs
// on these hosts, unless one is there; it unmounts what it mounted.
func mountNspawnTmpfs(t *testing.T) {
	const dir = "/run/systemd/nspawn"
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// command runs argv inside the container, in all its namespaces and root.
func (c *container) command(ctx context.Context, argv ...string) *exec.Cmd {
	args := append([]string{"-t", strconv.Itoa(c.init), "-a", "-r", "-w",
		"env", "-i", "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_COLORS=0"}, argv...)
	return exec.CommandContext(ctx, "nsenter", args...)
}

func (c *container) output(t *testing.T, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := c.command(ctx, argv...).CombinedOutput()
	return string(out)
}

func (c *container) run(t *testing.T, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := c.command(ctx, argv...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("in %s: %q: %v\n%s%s", c.name, argv, err, out, stderr.Bytes())
	}
	return string(out)
}

// waitRunning waits until the container's systemd finished booting.
func (c *container) waitRunning(t *testing.T, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		out, _ := c.command(ctx, "systemctl", "is-system-running", "--wait").Output()
		state := strings.TrimSpace(string(out))
		switch state {
		case "running":
			return state
		case "degraded":
			t.Logf("system degraded; failed units:\n%s", c.output(t, "systemctl", "--failed", "--no-legend"))
			return state
		}
		if ctx.Err() != nil {
			t.Fatalf("container %s not booted after %s (state %q)", c.name, timeout, state)
		}
		time.Sleep(200 * time.Millisecond) // the bus may not be up yet
	}
}

func (c *container) show(t *testing.T, unit string, props ...string) map[string]string {
	t.Helper()
	out := c.run(t, "systemctl", "show", unit, "-p", strings.Join(props, ","))
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

func (c *container) waitActive(t *testing.T, unit string, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p := c.show(t, unit, "ActiveState", "SubState", "Result", "NRestarts", "MainPID", "StatusText", "WatchdogUSec", "ExecMainStatus")
		switch p["ActiveState"] {
		case "active":
			return p
		case "failed":
			t.Fatalf("%s failed: %v\n%s", unit, p, c.output(t, "journalctl", "--no-pager", "-u", unit))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not active after %s: %v\n%s", unit, timeout, p, c.output(t, "journalctl", "--no-pager", "-u", unit))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (c *container) get(t *testing.T, url string) string {
	t.Helper()
	return c.run(t, "gdleak", "get", url)
}

func (c *container) sessions(t *testing.T) exporter.Document {
	t.Helper()
	var doc exporter.Document
	body := c.get(t, sessionsURL)
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("GET %s: %v\n%.2000s", sessionsURL, err, body)
	}
	return doc
}

func (c *container) waitSession(t *testing.T, timeout time.Duration, match func(exporter.Session) bool) exporter.Session {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		doc := c.sessions(t)
		for _, s := range doc.Sessions {
			if match(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			js, _ := json.MarshalIndent(doc, "", "  ")
			t.Fatalf("no matching session after %s; last document:\n%.4000s", timeout, js)
		}
		time.Sleep(time.Second)
	}
}

func (c *container) waitSessionGone(t *testing.T, timeout time.Duration, match func(exporter.Session) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		doc := c.sessions(t)
		if !slices.ContainsFunc(doc.Sessions, match) {
			return
		}
		if time.Now().After(deadline) {
			js, _ := json.MarshalIndent(doc, "", "  ")
			t.Fatalf("session still listed after %s:\n%.4000s", timeout, js)
		}
		time.Sleep(time.Second)
	}
}

func (c *container) waitMetric(t *testing.T, timeout time.Duration, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, ok := metricValue(c.get(t, metricsURL), name)
		if ok && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (found %v) after %s, want %v", name, v, ok, timeout, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// metricValue returns the value of an unlabelled sample in a text exposition.
func metricValue(exposition, name string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(exposition))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
