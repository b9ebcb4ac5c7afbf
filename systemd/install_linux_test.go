package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMakeInstall runs `make install` and `make uninstall` into a DESTDIR:
// the files land where the unit and man page say, the unit points at
// PREFIX, an edited config survives both a reinstall and an uninstall.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ghostd: not with -short")
	}
	dest, dist := t.TempDir(), t.TempDir()
	mk := func(target string) string {
		t.Helper()
		out, err := exec.Command("make", "-C", repoRoot(t), target, "DESTDIR="+dest, "DIST="+dist, "PREFIX=/usr/local").CombinedOutput()
		if err != nil {
			t.Fatalf("make %s: %v\n%s", target, err, out)
		}
		return string(out)
	}
	files := func() []string {
		var got []string
		filepath.Walk(dest, func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				got = append(got, strings.TrimPrefix(p, dest))
			}
			return nil
		})
		slices.Sort(got)
		return got
	}

	mk("install")
	want := []string{
		"/etc/default/ghostd",
		"/etc/ghostd/ghostd.yml",
		"/etc/systemd/system/ghostd.service",
		"/usr/local/bin/ghostd",
		"/usr/local/share/ghostd/kill.conf",
		"/usr/local/share/man/man8/ghostd.8.gz",
	}
	if got := files(); !slices.Equal(got, want) {
		t.Fatalf("installed %q, want %q", got, want)
	}
	unit, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system/ghostd.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\nExecStart=/usr/local/bin/ghostd run --config /etc/ghostd/ghostd.yml $GHOSTD_OPTS\n") {
		t.Errorf("installed unit does not run /usr/local/bin/ghostd:\n%s", unit)
	}
	if out, err := exec.Command(filepath.Join(dest, "usr/local/bin/ghostd"), "version").CombinedOutput(); err != nil {
		t.Errorf("installed ghostd version: %v\n%s", err, out)
	}

	// An edited config is never overwritten, nor removed.
	conf := filepath.Join(dest, "etc/ghostd/ghostd.yml")
	if err := os.WriteFile(conf, []byte("interval: 30s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mk("install"); !strings.Contains(out, "keeping existing "+conf) {
		t.Errorf("reinstall did not say it keeps %s:\n%s", conf, out)
	}
	mk("uninstall")
	if got := files(); !slices.Equal(got, []string{"/etc/ghostd/ghostd.yml"}) {
		t.Errorf("after uninstall: %q, want only the edited /etc/ghostd/ghostd.yml", got)
	}
	if data, _ := os.ReadFile(conf); string(data) != "interval: 30s\n" {
		t.Errorf("edited config changed: %q", data)
	}
}
