package systemd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
)

// The boot test installs the .deb into a debootstrapped Debian, boots it with
// systemd-nspawn and checks ghostd under its real unit: hardening, READY=1,
// the watchdog, /metrics, a CLOSE_WAIT leak found, and reload.
//
// The Debian root is cached as a tarball under bootCacheDir, keyed by what
// went into it; delete the directory to rebuild it. GHOSTD_BOOT_DEB=path
// uses a prebuilt package instead of running `make deb`.

const (
	bootCacheDir = "/var/cache/ghostd-test"
	bootSuite    = "bookworm"
	bootInclude  = "systemd,dbus,iproute2,procps" // procps: /bin/kill for ExecReload
	// bootWatchdog replaces WatchdogSec=2min in the container, so that the
	// test outlives two watchdog periods in seconds.
	bootWatchdog = 8 * time.Second
	metricsURL   = "http://127.0.0.1:10145/metrics"
	sessionsURL  = "http://127.0.0.1:10145/api/v1/sessions"
)

// The test configuration: fast scans, and thresholds the leak crosses soon.
const bootConfig = `interval: 2s
thresholds:
  idle: 4s
  close_wait: 3s
probe:
  interval: 600ms
  attempts: 2
log:
  level: debug
`

func TestBoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: debootstrap, dpkg in a chroot, systemd-nspawn --boot")
	}
	if testing.Short() {
		t.Skip("boots a container: not with -short")
	}
	for _, tool := range []string{"debootstrap", "systemd-nspawn", "nsenter", "tar", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (make deps installs debootstrap and systemd-container): %v", tool, err)
		}
	}
	start := time.Now()
	deb := buildDeb(t)
	root := debianRoot(t)
	t.Logf("root ready in %s", time.Since(start).Round(time.Millisecond))
	install(t, root, deb)

	c := boot(t, root)
	bootStart := time.Now()
	state := c.waitRunning(t, 90*time.Second)
	t.Logf("booted in %s: system %s", time.Since(bootStart).Round(time.Millisecond), state)

	// Type=notify: "active" only after READY=1, under the full hardening.
	svc := c.waitActive(t, "ghostd.service", 30*time.Second)
	activeAt := time.Now()
	t.Logf("ghostd.service: %v", svc)
	if svc["SubState"] != "running" || svc["NRestarts"] != "0" {
		t.Errorf("ghostd.service: SubState=%s NRestarts=%s, want running and 0", svc["SubState"], svc["NRestarts"])
	}
	if svc["WatchdogUSec"] != strconv.FormatInt(bootWatchdog.Microseconds(), 10) && svc["WatchdogUSec"] != bootWatchdog.String() {
		t.Errorf("WatchdogUSec=%s, want %s (the test drop-in)", svc["WatchdogUSec"], bootWatchdog)
	}
	mainPID := svc["MainPID"]

	t.Run("metrics", func(t *testing.T) {
		metrics := c.get(t, metricsURL)
		if !strings.HasPrefix(metrics, "ghostd_") && !strings.Contains(metrics, "\nghostd_") {
			t.Fatalf("/metrics has no ghostd_ metric:\n%.2000s", metrics)
		}
	})

	c.run(t, "systemctl", "start", "gdleak.service")
	t.Run("close_wait leak", func(t *testing.T) {
		// A CLOSE_WAIT leak inside the container is reported with its owner.
		leak := c.waitSession(t, 30*time.Second, func(s exporter.Session) bool {
			return s.Local == "127.0.0.1:7001" && slices.Contains(s.Reasons, "close_wait")
		})
		t.Logf("leak reported: %+v", leak)
		if leak.State != "CLOSE_WAIT" {
			t.Errorf("leak state %q, want CLOSE_WAIT", leak.State)
		}
		if leak.Comm != "gdleak" || leak.Unit != "gdleak.service" {
			t.Errorf("leak owner comm=%q unit=%q, want gdleak and gdleak.service: ghostd cannot see other processes under its hardening", leak.Comm, leak.Unit)
		}
	})

	t.Run("idle pair probed alive", func(t *testing.T) {
		// The idle, healthy pair on 7002, probed from inside its namespace,
		// must never be called a ghost.
		idle := c.waitSession(t, 30*time.Second, func(s exporter.Session) bool {
			return s.Local == "127.0.0.1:7002" && slices.Contains(s.Reasons, "idle") && s.Verdict != "unprobed" && s.Verdict != ""
		})
		t.Logf("idle pair: verdict=%s probe_mode=%s probes=%d replies=%d", idle.Verdict, idle.ProbeMode, idle.ProbesSent, idle.Replies)
		if idle.Ghost || idle.Verdict != "alive" {
			t.Errorf("a live idle connection got verdict %q ghost=%v", idle.Verdict, idle.Ghost)
		}
		// CAP_SYS_ADMIN (no CAP_BPF in the unit) loads the TCP iterator.
		if idle.ProbeMode != "in_window" {
			t.Errorf("probe_mode %q, want in_window: the BPF iterator did not load under the unit", idle.ProbeMode)
		}
	})

	t.Run("reload", func(t *testing.T) {
		// A longer close_wait threshold makes the leak no longer a suspect.
		writeFile(t, filepath.Join(root, "etc/ghostd/ghostd.yml"), strings.Replace(bootConfig, "close_wait: 3s", "close_wait: 1h", 1))
		c.run(t, "systemctl", "reload", "ghostd.service")
		c.waitMetric(t, 20*time.Second, "ghostd_config_last_reload_successful", 1)
		c.waitSessionGone(t, 30*time.Second, func(s exporter.Session) bool {
			return s.Local == "127.0.0.1:7001" && slices.Contains(s.Reasons, "close_wait")
		})
	})
	t.Run("bad reload", func(t *testing.T) {
		// A bad file is refused; the daemon keeps running on the old one.
		writeFile(t, filepath.Join(root, "etc/ghostd/ghostd.yml"), "probe:\n  interval: 1x\n")
		c.run(t, "systemctl", "reload", "ghostd.service")
		c.waitMetric(t, 20*time.Second, "ghostd_config_last_reload_successful", 0)
		if p := c.show(t, "ghostd.service", "ActiveState"); p["ActiveState"] != "active" {
			t.Errorf("after a bad reload: %v", p)
		}
	})

	t.Run("watchdog", func(t *testing.T) {
		// Two periods later: same process, no restart, and WatchdogTimestamp
		// moving (systemd updates it on every WATCHDOG=1).
		first := c.show(t, "ghostd.service", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
		wait := 2*bootWatchdog + time.Second - time.Since(activeAt)
		time.Sleep(max(wait, bootWatchdog))
		svc := c.show(t, "ghostd.service", "ActiveState", "SubState", "NRestarts", "MainPID", "WatchdogTimestampMonotonic", "StatusText")
		t.Logf("%s after active: %v", time.Since(activeAt).Round(time.Second), svc)
		if svc["ActiveState"] != "active" || svc["NRestarts"] != "0" || svc["MainPID"] != mainPID {
			t.Errorf("want active, NRestarts=0, MainPID=%s", mainPID)
		}
		if svc["WatchdogTimestampMonotonic"] == "0" || svc["WatchdogTimestampMonotonic"] == first {
			t.Errorf("WatchdogTimestampMonotonic %s -> %s: no WATCHDOG=1 received", first, svc["WatchdogTimestampMonotonic"])
		}
	})

	t.Run("kill with the drop-in", func(t *testing.T) {
		// The packaged drop-in grants CAP_NET_ADMIN and pidfd_getfd; with
		// kill.close_wait ghostd then shuts the leak down (a FIN, no RST).
		dropIn, err := os.ReadFile(filepath.Join(root, "usr/share/ghostd/kill.conf"))
		if err != nil {
			t.Fatalf("the package does not ship the kill drop-in: %v", err)
		}
		writeFile(t, filepath.Join(root, "etc/systemd/system/ghostd.service.d/kill.conf"), string(dropIn))
		writeFile(t, filepath.Join(root, "etc/ghostd/ghostd.yml"), bootConfig+"kill:\n  enabled: true\n  close_wait: true\n  min_age: 0s\n")
		c.run(t, "systemctl", "daemon-reload")
		c.run(t, "systemctl", "restart", "ghostd.service")
		svc := c.waitActive(t, "ghostd.service", 30*time.Second)
		status := c.run(t, "cat", "/proc/"+svc["MainPID"]+"/status")
		if !strings.Contains(status, "CapEff:\t0000000000283004") {
			t.Errorf("with the drop-in, want CapEff 0x283004 (+CAP_NET_ADMIN); /proc/PID/status:\n%s", status)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			out := c.run(t, "ss", "-Htn", "state", "close-wait", "( sport = :7001 )")
			if strings.TrimSpace(out) == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CLOSE_WAIT on :7001 not ended after 30s:\n%s", out)
			}
			time.Sleep(time.Second)
		}
		for _, s := range c.sessions(t).Sessions {
			if s.Local == "127.0.0.1:7001" {
				t.Logf("after the kill: state=%s killed=%v", s.State, s.Killed)
			}
		}
	})

	if t.Failed() {
		t.Logf("journal:\n%s", c.output(t, "journalctl", "--no-pager", "-o", "short-monotonic", "-u", "ghostd.service", "-u", "gdleak.service"))
	}
	t.Logf("boot test took %s", time.Since(start).Round(time.Millisecond))
}

// repoRoot is the module root, one level above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// buildDeb builds the package with `make deb` (or takes GHOSTD_BOOT_DEB).
func buildDeb(t *testing.T) string {
	t.Helper()
	if deb := os.Getenv("GHOSTD_BOOT_DEB"); deb != "" {
		return deb
	}
	dist := t.TempDir()
	cmd := exec.Command("make", "-C", repoRoot(t), "deb", "DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "ghostd_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %q, want one ghostd_*.deb", debs)
	}
	return debs[0]
}

// debianMirror returns the Debian mirror apt uses here, from the contents of
// sources.list files (one-line and deb822 styles), or "" when none is found.
func debianMirror(files map[string]string) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		var uris, suites []string
		flush := func() string {
			if slices.Contains(suites, bootSuite) && len(uris) > 0 {
				return uris[0]
			}
			return ""
		}
		for _, line := range strings.Split(files[n], "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "#") {
				continue
			}
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "deb" {
				// deb [options] URI SUITE COMPONENTS...
				i := 1
				if strings.HasPrefix(f[i], "[") {
					for i < len(f) && !strings.HasSuffix(f[i], "]") {
						i++
					}
					i++
				}
				if i+1 < len(f) && f[i+1] == bootSuite {
					return f[i]
				}
				continue
			}
			if line == "" { // end of a deb822 stanza
				if m := flush(); m != "" {
					return m
				}
				uris, suites = nil, nil
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok {
				switch strings.TrimSpace(k) {
				case "URIs":
					uris = strings.Fields(v)
				case "Suites":
					suites = strings.Fields(v)
				}
			}
		}
		if m := flush(); m != "" {
			return m
		}
	}
	return ""
}

func aptMirror(t *testing.T) string {
	files := map[string]string{}
	paths, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	for _, p := range append([]string{"/etc/apt/sources.list"}, paths...) {
		if data, err := os.ReadFile(p); err == nil {
			files[p] = string(data)
		}
	}
	if m := debianMirror(files); m != "" {
		return m
	}
	t.Fatalf("no %s mirror in /etc/apt/sources.list*", bootSuite)
	return ""
}

// debianRoot returns a fresh Debian root in a temp dir, extracted from the
// cached tarball, which it builds with debootstrap when missing.
func debianRoot(t *testing.T) string {
	t.Helper()
	mirror := aptMirror(t)
	sum := sha256.Sum256([]byte(strings.Join([]string{bootSuite, "minbase", bootInclude, mirror, "v1"}, " ")))
	tarball := filepath.Join(bootCacheDir, fmt.Sprintf("debian-%s-%s.tar", bootSuite, hex.EncodeToString(sum[:6])))
	if _, err := os.Stat(tarball); err != nil {
		start := time.Now()
		if err := os.MkdirAll(bootCacheDir, 0o755); err != nil {
			t.Fatal(err)
		}
		// A build a killed run left behind is useless.
		stale, _ := filepath.Glob(filepath.Join(bootCacheDir, "build-*"))
		for _, d := range stale {
			os.RemoveAll(d)
		}
		build, err := os.MkdirTemp(bootCacheDir, "build-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(build)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+bootInclude, bootSuite, filepath.Join(build, "root"), mirror).CombinedOutput()
		if err != nil {
			t.Fatalf("debootstrap: %v\n%s", err, tail(out, 3000))
		}
		// apt's package cache is not needed to boot.
		os.RemoveAll(filepath.Join(build, "root/var/cache/apt/archives"))
		tmp := tarball + ".tmp"
		if out, err := exec.Command("tar", "--numeric-owner", "--xattrs", "-C", filepath.Join(build, "root"), "-cf", tmp, ".").CombinedOutput(); err != nil {
			os.Remove(tmp)
			t.Fatalf("tar: %v\n%s", err, out)
		}
		if err := os.Rename(tmp, tarball); err != nil {
			t.Fatal(err)
		}
		// Roots built from other package lists or mirrors are stale now.
		old, _ := filepath.Glob(filepath.Join(bootCacheDir, "debian-*.tar"))
		for _, o := range old {
			if o != tarball {
				os.Remove(o)
			}
		}
		t.Logf("debootstrap %s from %s: %s, cached as %s", bootSuite, mirror, time.Since(start).Round(time.Second), tarball)
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "--numeric-owner", "--xattrs", "-C", root, "-xf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("extract %s: %v\n%s", tarball, err, out)
	}
	return root
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// install puts the package, the leak helper and the test configuration into
// the root, the way an administrator would: dpkg -i, then edit the config.
func install(t *testing.T, root, deb string) {
	t.Helper()
	data, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "tmp/ghostd.deb"), string(data))
	// No systemd runs in the chroot: postinst only enables the unit.
	if out, err := exec.Command("chroot", root, "dpkg", "-i", "/tmp/ghostd.deb").CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/ghostd.service")); err != nil {
		t.Errorf("postinst did not enable ghostd.service: %v", err)
	}
	out, err := exec.Command("chroot", root, "dpkg-query", "-W", "-f", "${Conffiles}", "ghostd").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "/etc/ghostd/ghostd.yml") || !strings.Contains(string(out), "/etc/default/ghostd") {
		t.Errorf("conffiles: %v\n%s", err, out)
	}

	helper := filepath.Join(root, "usr/local/bin/gdleak")
	build := exec.Command("go", "build", "-o", helper, "./testdata/gdleak")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build gdleak: %v\n%s", err, out)
	}
	writeFile(t, filepath.Join(root, "etc/systemd/system/gdleak.service"),
		"[Unit]\nDescription=ghostd boot test: leak a CLOSE_WAIT socket\n[Service]\nExecStart=/usr/local/bin/gdleak hold\n")
	writeFile(t, filepath.Join(root, "etc/ghostd/ghostd.yml"), bootConfig)
	writeFile(t, filepath.Join(root, "etc/systemd/system/ghostd.service.d/boot-test.conf"),
		fmt.Sprintf("[Service]\nWatchdogSec=%s\n", bootWatchdog))
	// Nothing to log in on; keeps the console quiet.
	if err := os.Symlink("/dev/null", filepath.Join(root, "etc/systemd/system/console-getty.service")); err != nil {
		t.Fatal(err)
	}
}
