package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// maxExposure is the highest `systemd-analyze security` score the unit may
// have (systemd-networkd scores 2.8, systemd-resolved 2.2).
const maxExposure = 2.5

func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (Debian package systemd; make deps installs it): %v", err)
	}
	return p
}

// unitCopy writes the unit into a temp dir with mutate applied, pointing
// ExecStart at an executable stand-in, since verify checks that it exists.
func unitCopy(t *testing.T, mutate func(string) string) string {
	t.Helper()
	data, err := os.ReadFile("ghostd.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ghostd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(data), "/usr/bin/ghostd", bin)
	if mutate != nil {
		unit = mutate(unit)
	}
	path := filepath.Join(dir, "ghostd.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUnitVerify(t *testing.T) {
	sa := systemdAnalyze(t)
	verify := func(path string) (string, error) {
		out, err := exec.Command(sa, "verify", "--man=no", path).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := verify(unitCopy(t, nil)); err != nil || out != "" {
		t.Errorf("systemd-analyze verify ghostd.service: %v\n%s", err, out)
	}
	// The check must be able to fail: a misspelt directive is reported.
	bad := unitCopy(t, func(u string) string { return strings.Replace(u, "ProtectHome=", "ProtectHomes=", 1) })
	if out, _ := verify(bad); !strings.Contains(out, "ProtectHomes") {
		t.Errorf("verify did not report a misspelt directive; output:\n%s", out)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for ghostd\.service: ([0-9]+\.[0-9]+)`)

func exposure(t *testing.T, path string) float64 {
	t.Helper()
	out, err := exec.Command(systemdAnalyze(t), "security", "--offline=yes", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	f, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestUnitSecurity(t *testing.T) {
	got := exposure(t, unitCopy(t, nil))
	t.Logf("systemd-analyze security --offline=yes: overall exposure %.1f (limit %.1f)", got, maxExposure)
	if got > maxExposure {
		t.Errorf("exposure %.1f > %.1f", got, maxExposure)
	}
	// The score must be able to fail: without hardening it is far worse.
	loose := exposure(t, unitCopy(t, func(u string) string {
		var keep []string
		for _, l := range strings.Split(u, "\n") {
			if !strings.HasPrefix(l, "Protect") && !strings.HasPrefix(l, "SystemCallFilter") && !strings.HasPrefix(l, "CapabilityBoundingSet") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}))
	if loose <= maxExposure {
		t.Errorf("an unhardened copy scored %.1f, the check cannot fail", loose)
	}
}

// directives returns every value of key in the unit, in order.
func directives(t *testing.T, key string) []string {
	t.Helper()
	data, err := os.ReadFile("ghostd.service")
	if err != nil {
		t.Fatal(err)
	}
	var vals []string
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			vals = append(vals, v)
		}
	}
	return vals
}

func TestUnitContract(t *testing.T) {
	// What FACTS.md and the design require of the unit.
	for key, want := range map[string]string{
		"Type":               "notify",
		"ExecReload":         "/bin/kill -HUP $MAINPID",
		"EnvironmentFile":    "-/etc/default/ghostd",
		"DynamicUser":        "yes",
		"RestrictNamespaces": "net",
	} {
		if got := directives(t, key); len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	if got := directives(t, "ExecStart"); len(got) != 1 || !strings.HasPrefix(got[0], "/usr/bin/ghostd run ") {
		t.Errorf("ExecStart=%q, want /usr/bin/ghostd run …", got)
	}
	// ghostd must see every namespace and process.
	for _, key := range []string{"PrivateNetwork", "PrivateUsers", "ProcSubset", "IPAddressDeny"} {
		if got := directives(t, key); len(got) > 0 {
			t.Errorf("%s=%q must not be set", key, got)
		}
	}
	if got := directives(t, "ProtectProc"); slices.Contains(got, "invisible") || slices.Contains(got, "noaccess") {
		t.Errorf("ProtectProc=%q hides processes ghostd must see", got)
	}
	// Ambient and bounding sets are the same, exact list.
	// CAP_NET_ADMIN comes only with the kill drop-in.
	want := []string{"CAP_DAC_READ_SEARCH", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}
	for _, key := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		got := strings.Fields(strings.Join(directives(t, key), " "))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
}

func TestKillDropIn(t *testing.T) {
	// The drop-in adds CAP_NET_ADMIN and pidfd_getfd; the score it costs is reported.
	sa := systemdAnalyze(t)
	dir := filepath.Dir(unitCopy(t, nil))
	drop, err := os.ReadFile("ghostd-kill.conf")
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(dir, "ghostd.service"))
	if err != nil {
		t.Fatal(err)
	}
	// A drop-in's [Service] lines apply after the unit's: append them.
	merged := string(unit) + "\n" + string(drop)
	path := filepath.Join(dir, "ghostd.service")
	if err := os.WriteFile(path, []byte(merged), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", "--man=no", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("verify unit + drop-in: %v\n%s", err, out)
	}
	out, err := exec.Command(sa, "security", "--offline=yes", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Fatalf("security: %v\n%s", err, out)
	}
	// The analyzer sees what the drop-in grants.
	for _, want := range []string{"CapabilityBoundingSet=~CAP_NET_ADMIN", "pidfd_getfd is allowed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("security output of unit + drop-in lacks %q", want)
		}
	}
	t.Logf("with ghostd-kill.conf: overall exposure %.1f", exposure(t, path))
}
