package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/testnet"
)

// podImage is the one image the pod test builds: the sandbox ("pause") and
// the workload both run internal/cmd/podworkload.
const podImage = "ghostd.test/podworkload:1"

// TestPodsContainerd runs Debian's containerd (CRI plugin, runc, the bridge
// and host-local CNI plugins) inside a network namespace of the test's own,
// creates a pod through the CRI API whose container connects to a peer in
// that namespace, makes the peer vanish, and checks that `ghostd scan`
// names the pod's namespace "<namespace>/<pod>", finds the ghost and
// attributes it to the container by name.
func TestPodsContainerd(t *testing.T) {
	needRoot(t)
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "nsenter", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (Debian packages containerd, runc, containernetworking-plugins; make test installs them)", bin)
			}
			t.Skipf("%s is missing: install containerd, runc and containernetworking-plugins (make test does)", bin)
		}
	}
	node := testnet.NewNS(t, "node")
	c := startContainerd(t, node)

	// The peer: a listener in the node namespace, reached on the CNI bridge.
	ln := node.ListenNoKeepalive(t, "tcp4", "0.0.0.0:0") // the bridge appears with the first pod
	port := ln.Addr().(*net.TCPAddr).Port
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			accepted <- conn
		}
	}()

	pod := c.runPod(t, "gd-test", "ghost-pod")
	c.runContainer(t, pod, "client", "connect", "198.51.100.1:"+strconv.Itoa(port))
	var server net.Conn
	select {
	case server = <-accepted:
		t.Cleanup(func() { server.Close() })
	case <-time.After(30 * time.Second):
		t.Fatalf("the pod's container never connected; its log:\n%s", c.containerLog(t, pod, "client"))
	}
	// The peer vanishes: the node namespace silently drops the connection.
	node.Nft(t, fmt.Sprintf(`table inet gdpeer {
	chain in { type filter hook input priority 0; tcp dport %d drop; }
	chain out { type filter hook output priority 0; tcp sport %d drop; }
}`, port, port))
	time.Sleep(2500 * time.Millisecond) // past --idle 2s

	name := "gd-test/ghost-pod"
	args := []string{"scan", "--netns", name, "--idle", "2s", "--probe-interval", "1s", "--runtime-endpoint", c.sock}
	doc, out := scanDoc(t, append(args, "--json")...)
	if len(doc.Namespaces) != 1 || doc.Namespaces[0].Netns != name || doc.Namespaces[0].Pod != "ghost-pod" || doc.Namespaces[0].K8sNamespace != "gd-test" {
		t.Fatalf("--netns %s selected %+v, want the pod's namespace named after it", name, doc.Namespaces)
	}
	local := server.RemoteAddr().String()
	var found *exporter.Session
	for i := range doc.Sessions {
		if doc.Sessions[i].Local == local {
			found = &doc.Sessions[i]
		}
	}
	if found == nil {
		t.Fatalf("no session for the pod's connection %s in\n%s", local, out)
	}
	if !found.Ghost || found.Verdict != "silent" || found.Netns != name || found.Pod != "ghost-pod" ||
		found.K8sNamespace != "gd-test" || found.ContainerName != "client" || found.Comm != "podworkload" {
		t.Errorf("the pod's connection: %+v; want a silent ghost in %s, container client, process podworkload", *found, name)
	}

	// The table says the same.
	line := lineWith(scanTable(t, append(args, "--no-probe")...), local+" "+server.LocalAddr().String())
	if !strings.HasPrefix(line, name+" ") || !strings.Contains(line, "container:client") {
		t.Errorf("table row for %s = %q, want it to start with %s and name container:client", local, line, name)
	}

	// The daemon: metrics carry the pod's name as their netns label, once
	// per pod, and the page names the pod and the container.
	d := startDaemon(t, "", "--netns", name, "--idle", "2s", "--interval", "1s", "--probe-interval", "600ms", "--runtime-endpoint", c.sock)
	waitFor(t, 30*time.Second, "the daemon's metrics name the pod's ghost", func() (bool, string) {
		mfs, err := d.metrics()
		if err != nil {
			return false, err.Error()
		}
		ghosts, _ := value(mfs, "ghostd_ghost_sessions", map[string]string{"netns": name, "verdict": "silent", "family": "inet"})
		info, _ := value(mfs, "ghostd_pod_info", map[string]string{"netns": name, "k8s_namespace": "gd-test", "pod": "ghost-pod"})
		up, _ := value(mfs, "ghostd_runtime_up", map[string]string{"runtime": "containerd", "endpoint": c.sock})
		return ghosts >= 1 && info == 1 && up == 1, fmt.Sprintf("ghosts %v, pod_info %v, runtime_up %v", ghosts, info, up)
	})
	_, page, err := d.get("/")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(page, []byte(name)) || !bytes.Contains(page, []byte("client")) {
		t.Errorf("the page names neither the pod %s nor the container client:\n%s", name, page)
	}
	if _, err := d.stop(10 * time.Second); err != nil {
		t.Errorf("ghostd run: %v", err)
	}

	// `ghostd probe` finds the connection by the pod's name too.
	probeOut, err := exec.Command(ghostdBin, "probe", "--netns", name, "--runtime-endpoint", c.sock, local, server.LocalAddr().String()).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 3) || !strings.Contains(string(probeOut), "silent") {
		t.Errorf("ghostd probe --netns %s %s %s: %v\n%s", name, local, server.LocalAddr(), err, probeOut)
	}

	// Kill rules by pod and container: denied by pod, the ghost survives a
	// `scan --kill`; allowed by pod and container, it is killed.
	killScan := func(rule ...string) *exporter.Session {
		t.Helper()
		a := append([]string{"scan", "--json", "--netns", name, "--idle", "2s", "--probe-interval", "600ms",
			"--runtime-endpoint", c.sock, "--kill", "--kill-min-age", "0s"}, rule...)
		doc, _ := scanDoc(t, a...)
		for i := range doc.Sessions {
			if doc.Sessions[i].Local == local {
				return &doc.Sessions[i]
			}
		}
		return nil
	}
	if s := killScan("--kill-deny", "{pods: [gd-test/*]}"); s == nil || s.Killed || !s.Ghost {
		t.Errorf("deny pods gd-test/*: session %+v, want a ghost not killed", s)
	}
	if s := killScan("--kill-allow", "{pods: [gd-test/ghost-pod], containers: [client]}"); s == nil || !s.Killed {
		t.Errorf("allow pod gd-test/ghost-pod, container client: session %+v, want it killed", s)
	}
	if s := killScan("--no-probe"); s != nil {
		t.Errorf("after the kill the pod's connection is still there: %+v", s)
	}

	// The runtime gone (containerd stopped, the pod still running): the
	// pod's namespace keeps a derived name, and ghostd says why once.
	netnsPath := c.netnsPath(t, pod)
	c.kill(t)
	cmd := exec.Command(ghostdBin, "scan", "--no-probe", "--all", "--json", "--netns", netnsPath, "--runtime-endpoint", c.sock)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("ghostd scan with the runtime down: %v\n%s", err, stderr.Bytes())
	}
	doc = decodeDoc(t, out)
	if len(doc.Namespaces) != 1 || doc.Namespaces[0].Netns != filepath.Base(netnsPath) || doc.Namespaces[0].Pod != "" {
		t.Errorf("runtime down: --netns %s selected %+v, want it named %s with no pod", netnsPath, doc.Namespaces, filepath.Base(netnsPath))
	}
	if n := strings.Count(stderr.String(), "container runtime unreachable"); n != 1 {
		t.Errorf("runtime down: %d log lines saying so, want 1:\n%s", n, stderr.Bytes())
	}
	c.launch(t) // so that cleanup removes the pod through the CRI
}
