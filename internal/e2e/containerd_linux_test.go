package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/podinfo"
)

func exitStderr(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}

// containerd is a containerd started by the test in its own namespace.
type containerd struct {
	dir, sock string
	cmd       *exec.Cmd
	logPath   string // containerd's stdout and stderr
	rs        runtimeapi.RuntimeServiceClient
	conn      *grpc.ClientConn
	cgroup    string // cgroup parent of the test's pods
	node      *testnet.NS
	hostDirs  []string // directories outside dir that containerd creates and cleanup removes
	stopped   bool
}

// startContainerd builds the image, writes containerd's and CNI's
// configuration under a temporary directory (root, state, socket, CNI conf
// and IPAM state all there), starts containerd inside node's network
// namespace (nsenter --net only: its mounts, pods' netns files included,
// stay visible to ghostd) and imports the image.
func startContainerd(t *testing.T, node *testnet.NS) *containerd {
	t.Helper()
	dir, err := os.MkdirTemp("", "gd-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{dir: dir, sock: filepath.Join(dir, "containerd.sock"), logPath: filepath.Join(dir, "containerd.log"),
		cgroup: "/gd-pods-" + filepath.Base(dir)[len("gd-ctrd-"):]}
	// containerd 1.6 creates these whatever its root and state: the shims'
	// socket directory, runc's root and CNI's result cache. The ones that
	// do not exist yet are removed again (when empty) by cleanup.
	for _, d := range []string{"/run/containerd/s", "/run/containerd/runc/k8s.io", "/run/containerd/runc", "/run/containerd", "/var/lib/cni/results", "/var/lib/cni"} {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			c.hostDirs = append(c.hostDirs, d)
		}
	}
	t.Cleanup(func() { c.cleanup(t) })
	for _, d := range []string{"root", "state", "cni", "ipam", "logs", "opt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	image := buildPodImage(t, dir)
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = "%[3]s.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  disable_apparmor = true
  # Without it runc fails here with "nsexec: failed to update
  # /proc/self/oom_score_adj: Permission denied" (the sandbox's -998).
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[6]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, filepath.Join(dir, "opt"), podImage, filepath.Join(dir, "cni"))
	cni := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "gd-pods", "plugins": [
  {"type": "bridge", "bridge": "gdcni0", "isGateway": true, "isDefaultGateway": false, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.51.100.0/24"}]], "dataDir": %q}}
]}`, filepath.Join(dir, "ipam"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cni", "10-gd-pods.conflist"), []byte(cni), 0o600); err != nil {
		t.Fatal(err)
	}
	c.node = node
	c.launch(t)
	out, err := exec.Command("ctr", "--address", c.sock, "-n", "k8s.io", "images", "import", "--all-platforms", image).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	return c
}

// logText is containerd's log so far.
func (c *containerd) logText() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// launch starts containerd in the node's namespace (nsenter --net only:
// its mounts, the pods' netns files included, stay visible to ghostd) and
// waits for its CRI to answer.
func (c *containerd) launch(t *testing.T) {
	t.Helper()
	c.stopped = false
	c.cmd = exec.Command("nsenter", "--net="+c.node.Path, "containerd", "--config", filepath.Join(c.dir, "config.toml"))
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // containerd has its own copy
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.conn, err = grpc.NewClient("unix://"+c.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c.rs = runtimeapi.NewRuntimeServiceClient(c.conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := c.rs.Status(ctx, &runtimeapi.StatusRequest{})
		cancel()
		if err == nil && st.GetStatus() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd's CRI never answered: %v\ncontainerd's log:\n%s", err, c.logText())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill stops containerd and leaves its pods running.
func (c *containerd) kill(t *testing.T) {
	t.Helper()
	c.conn.Close()
	c.terminate()
	c.stopped = true
}

// terminate sends containerd SIGTERM and waits for it to exit, killing it
// (by its pid) after 15 s.
func (c *containerd) terminate() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// netnsPath is the pod's network namespace file, from its verbose status.
func (c *containerd) netnsPath(t *testing.T, pod *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod.Annotations["gd.sandbox-id"], Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	path, _ := podinfo.ParseVerboseInfo(st.GetInfo())
	if path == "" {
		t.Fatalf("no netns path in the pod's verbose status: %v", st.GetInfo())
	}
	return path
}

// runPod creates a pod sandbox through the CRI API and returns its id.
func (c *containerd) runPod(t *testing.T, namespace, name string) *runtimeapi.PodSandboxConfig {
	t.Helper()
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: filepath.Join(c.dir, "logs", name),
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: c.cgroup,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD},
			},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s/%s: %v\ncontainerd's log:\n%s", namespace, name, err, c.logText())
	}
	cfg.Annotations = map[string]string{"gd.sandbox-id": r.GetPodSandboxId()}
	return cfg
}

// runContainer creates and starts a podworkload container in the pod.
func (c *containerd) runContainer(t *testing.T, pod *runtimeapi.PodSandboxConfig, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := pod.Annotations["gd.sandbox-id"]
	r, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: id,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: podImage},
			Command:  []string{"/podworkload"},
			Args:     args,
			LogPath:  name + ".log",
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD},
			}},
		},
		SandboxConfig: pod,
	})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v\ncontainerd's log:\n%s", name, err, c.logText())
	}
	if _, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.GetContainerId()}); err != nil {
		t.Fatalf("StartContainer %s: %v\ncontainerd's log:\n%s", name, err, c.logText())
	}
}

func (c *containerd) containerLog(t *testing.T, pod *runtimeapi.PodSandboxConfig, name string) string {
	b, err := os.ReadFile(filepath.Join(pod.LogDirectory, name+".log"))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// stop removes every pod (their containers, shims and netns with them) and
// stops containerd.
func (c *containerd) stop(t *testing.T) {
	if c.stopped || c.cmd == nil || c.cmd.Process == nil {
		return
	}
	c.stopped = true
	if c.rs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if l, err := c.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, sb := range l.GetItems() {
				if _, err := c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
					t.Errorf("StopPodSandbox: %v", err)
				}
				if _, err := c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
					t.Errorf("RemovePodSandbox: %v", err)
				}
			}
		}
		cancel()
		c.conn.Close()
	}
	c.terminate()
}

// cleanup stops containerd, ends any shim it left (by pid: processes whose
// command line names this test's socket), unmounts what is left under the
// test's directory and removes it and the pods' cgroups.
func (c *containerd) cleanup(t *testing.T) {
	c.stop(t)
	for _, pid := range pidsNaming(c.sock) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, m := range mountsUnder(c.dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("remove %s: %v", c.dir, err)
	}
	for _, d := range c.hostDirs { // deepest first
		os.Remove(d)
	}
	for _, ctl := range []string{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd", "unified"} {
		os.Remove(filepath.Join("/sys/fs/cgroup", ctl, c.cgroup))
	}
}

// pidsNaming returns the processes whose command line contains s.
func pidsNaming(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, pid)
		}
	}
	return out
}

// mountsUnder returns the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// buildPodImage builds podworkload statically and packs it as an OCI image
// layout tarball for `ctr images import`: one uncompressed layer holding
// /podworkload, entrypoint "pause".
func buildPodImage(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "podworkload")
	build := exec.Command("go", "build", "-o", bin, "github.com/ghostd/ghostd/internal/cmd/podworkload")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build podworkload: %v\n%s", err, out)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	must(t, tw.WriteHeader(&tar.Header{Name: "podworkload", Mode: 0o755, Size: int64(len(exe)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}))
	_, err = tw.Write(exe)
	must(t, err)
	must(t, tw.Close())

	blobs := map[string][]byte{}
	desc := func(mediaType string, b []byte) map[string]any {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[hex.EncodeToString(sum[:])] = b
		return map[string]any{"mediaType": mediaType, "digest": d, "size": len(b)}
	}
	layerDesc := desc("application/vnd.oci.image.layer.v1.tar", layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/podworkload", "pause"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc["digest"].(string)}},
	})
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": desc("application/vnd.oci.image.config.v1+json", config),
		"layers": []any{layerDesc},
	})
	md := desc("application/vnd.oci.image.manifest.v1+json", manifest)
	md["platform"] = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	md["annotations"] = map[string]string{"io.containerd.image.name": podImage, "org.opencontainers.image.ref.name": "1"}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{md}})

	path := filepath.Join(dir, "podworkload.tar")
	f, err := os.Create(path)
	must(t, err)
	defer f.Close()
	ow := tar.NewWriter(f)
	add := func(name string, b []byte) {
		must(t, ow.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}))
		_, err := ow.Write(b)
		must(t, err)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", index)
	for sum, b := range blobs {
		add("blobs/sha256/"+sum, b)
	}
	must(t, ow.Close())
	return path
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
