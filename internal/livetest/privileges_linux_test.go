package livetest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/testnet"
)

// TestDaemonSetPrivilegesSuffice runs `ghostd scan` with exactly the
// privileges deploy/kubernetes/daemonset.yaml gives the container (root with
// only its added capabilities, no_new_privs for allowPrivilegeEscalation:
// false) and checks that it lacks nothing: it enters another namespace,
// probes in window (SYS_ADMIN standing in for BPF + PERFMON) and proves a
// ghost. Seccomp and AppArmor profiles are the runtime's and not modelled.
//
// The base DaemonSet reports only and lacks CAP_NET_ADMIN, which ghostd
// notes once; the kill overlay's container must lack nothing.
func TestDaemonSetPrivilegesSuffice(t *testing.T) {
	needRoot(t, "network namespaces, raw probes")
	for _, tt := range []struct {
		name, patch string
		flags       []string
		mayLack     string
	}{
		{"report-only", "", nil, "CAP_NET_ADMIN"},
		{"kill", "../../deploy/kubernetes/kill/daemonset-patch.yaml", []string{"--kill"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) { testPrivileges(t, tt.patch, tt.flags, tt.mayLack) })
	}
}

func readDaemonSet(t *testing.T, path string) *appsv1.DaemonSet {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &ds
}

// testPrivileges runs the base DaemonSet's container privileges, with the
// capabilities of patch when one is given (a strategic merge patch replaces
// the list whole).
func testPrivileges(t *testing.T, patch string, flags []string, mayLack string) {
	manifest := "../../deploy/kubernetes/daemonset.yaml"
	sc := readDaemonSet(t, manifest).Spec.Template.Spec.Containers[0].SecurityContext
	if patch != "" {
		manifest = patch
		psc := readDaemonSet(t, patch).Spec.Template.Spec.Containers[0].SecurityContext
		if sc == nil || psc == nil || psc.Capabilities == nil {
			t.Fatalf("%s: no capabilities to patch in", patch)
		}
		sc.Capabilities.Add = psc.Capabilities.Add
	}
	if sc == nil || sc.Capabilities == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Fatalf("daemonset.yaml: want a root container with capabilities, got %+v", sc)
	}
	bounding := []string{"-all"}
	for _, c := range sc.Capabilities.Add {
		bounding = append(bounding, "+"+strings.ToLower(string(c)))
	}
	setpriv := []string{"--bounding-set", strings.Join(bounding, ","), "--inh-caps", "-all"}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		setpriv = append(setpriv, "--no-new-privs")
	}

	ghostd := buildGhostd(t)
	n := testnet.New(t)
	ghost(t, n, "tcp4")
	time.Sleep(1500 * time.Millisecond) // idle longer than --idle

	cfg := writeFile(t, t.TempDir(), "empty.yml", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append(append(setpriv, "--", ghostd, "scan", "--json", "--config", cfg,
		"--netns", n.Server.Name, "--idle", "1s", "--probe-interval", "600ms"), flags...)
	cmd := exec.CommandContext(ctx, "setpriv", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("setpriv %s\nstderr:\n%s", strings.Join(args, " "), stderr.String())
	if err != nil {
		t.Fatalf("ghostd scan: %v\n%s", err, out)
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "missing capability") && (mayLack == "" || !strings.Contains(line, "capability="+mayLack+" ")) {
			t.Errorf("with the privileges of %s: %s", manifest, line)
		}
	}
	if !strings.Contains(stderr.String(), "mode=in_window") {
		t.Error("probes are not in window with the DaemonSet's privileges")
	}
	var doc exporter.Document
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("decode %s: %v", filepath.Base(ghostd), err)
	}
	scanned := false
	for _, ns := range doc.Namespaces {
		if ns.Netns == n.Server.Name {
			scanned = true
			if ns.Error != "" {
				t.Errorf("namespace %s: %s", ns.Netns, ns.Error)
			}
		}
	}
	if !scanned {
		t.Errorf("namespace %s not scanned: %+v", n.Server.Name, doc.Namespaces)
	}
	ghosts := 0
	for _, s := range doc.Sessions {
		if s.Ghost {
			ghosts++
		}
	}
	if ghosts != 1 {
		t.Errorf("%d ghosts, want 1: %s", ghosts, out)
	}
}
