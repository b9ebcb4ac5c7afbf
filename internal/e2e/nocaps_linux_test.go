package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ghostd/ghostd/internal/testnet"
)

// TestWithoutCapabilities runs `ghostd scan` as an unprivileged user with no
// capabilities: it must say, once and in one line each, what it cannot do,
// list the namespaces it cannot enter with the error, and still scan its own.
func TestWithoutCapabilities(t *testing.T) {
	needRoot(t)
	n := testnet.New(t) // a named namespace that must show up as not scannable
	// The binary must be reachable by nobody.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ghostd")
	data, err := os.ReadFile(ghostdPlainBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	// No --config: the default path is missing here, which means defaults.
	nobody := []string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"}
	cmd := setprivCmd(t, nobody, bin, "scan", "--netns", "all")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("unprivileged scan failed: %v\n%s", err, text)
	}
	for _, c := range []string{"CAP_SYS_ADMIN", "CAP_NET_RAW"} {
		lines := 0
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, "missing capability") && strings.Contains(l, c) {
				lines++
			}
		}
		if lines != 1 {
			t.Errorf("%s: %d warning lines, want exactly one:\n%s", c, lines, text)
		}
	}
	if !strings.Contains(text, "netns "+n.Server.Name+": not scanned:") {
		t.Errorf("the namespace it cannot enter is not listed with its error:\n%s", text)
	}
	if !strings.Contains(text, "sessions listed") {
		t.Errorf("no summary: the scan of its own namespace did not complete:\n%s", text)
	}
	t.Logf("unprivileged ghostd scan:\n%s", text)

	// With the kill policy on, the missing CAP_NET_ADMIN is named once, and
	// the scan still completes.
	cmd = setprivCmd(t, nobody, bin, "scan", "--netns", "all", "--kill")
	cmd.Dir = dir
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged scan --kill failed: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "kill mode destroy cannot work here"); n != 1 || !strings.Contains(string(out), "operation not permitted") {
		t.Errorf("scan --kill without CAP_NET_ADMIN: %d explanations (want one, naming EPERM):\n%s", n, out)
	}
}
