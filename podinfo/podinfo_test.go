package podinfo

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ghostd/ghostd/internal/fakecri"
	"github.com/ghostd/ghostd/inventory"
)

const (
	idWeb = "aaaaaaaaaaaa0000000000000000000000000000000000000000000000000001"
	idDNS = "bbbbbbbbbbbb0000000000000000000000000000000000000000000000000002"
)

func testPods() ([]fakecri.Pod, []fakecri.Container) {
	return []fakecri.Pod{
			{ID: "sb-web", Namespace: "default", Name: "web", UID: "u1", NetnsPath: "/run/netns/cni-web", PID: 100},
			{ID: "sb-dns", Namespace: "kube-system", Name: "dns", UID: "u2", PID: 200}, // no path: found by pid
			{ID: "sb-host", Namespace: "kube-system", Name: "proxy", UID: "u3", PID: 300, HostNetwork: true},
			{ID: "sb-old", Namespace: "default", Name: "old", UID: "u4", NetnsPath: "/run/netns/cni-old", NotReady: true},
		}, []fakecri.Container{
			{ID: idWeb, Name: "nginx", PodID: "sb-web"},
			{ID: idDNS, Name: "coredns", PodID: "sb-dns"},
		}
}

// TestCRIList: the CRI source returns ready sandboxes with their netns path
// and pid from the verbose status, skips hostNetwork ones (the node's
// namespace is no pod's), and ties containers to their pods.
func TestCRIList(t *testing.T) {
	srv := fakecri.Start(t)
	srv.Set(testPods())
	c := NewCRI("fake", srv.Sock)
	defer c.Close()
	got, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Snapshot{
		Pods: []Pod{
			{Namespace: "default", Name: "web", UID: "u1", NetnsPath: "/run/netns/cni-web", PID: 100, IDs: []string{"sb-web", idWeb}},
			{Namespace: "kube-system", Name: "dns", UID: "u2", PID: 200, IDs: []string{"sb-dns", idDNS}},
		},
		Containers: []Container{
			{ID: idWeb, Name: "nginx", PodNamespace: "default", PodName: "web"},
			{ID: idDNS, Name: "coredns", PodNamespace: "kube-system", PodName: "dns"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

// staleSocket returns the path of a socket file whose server exited
// without removing it.
func staleSocket(t *testing.T) string {
	t.Helper()
	stale := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	return stale
}

// TestCRIDown: a socket nobody serves is an error, a missing one ErrNoSocket.
func TestCRIDown(t *testing.T) {
	stale := staleSocket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := NewCRI("fake", stale).List(ctx); err == nil || errors.Is(err, ErrNoSocket) {
		t.Errorf("stopped server: err = %v, want a dial error", err)
	}
	if _, err := NewCRI("fake", filepath.Join(t.TempDir(), "none.sock")).List(ctx); !errors.Is(err, ErrNoSocket) {
		t.Errorf("missing socket: err = %v, want ErrNoSocket", err)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeInodes maps namespace paths to inodes, as nsInode would.
func fakeInodes(m map[string]uint64) func(string) (uint64, error) {
	return func(p string) (uint64, error) {
		if ino, ok := m[p]; ok {
			return ino, nil
		}
		return 0, errors.New("not a namespace")
	}
}

func testResolver(t *testing.T, eps []string, explicit bool, clock *fakeClock, inodes map[string]uint64) (*Resolver, *bytes.Buffer) {
	t.Helper()
	if !explicit { // a default endpoint: pretend eps are among them
		old := DefaultEndpoints
		DefaultEndpoints = append(slices.Clone(old), eps...)
		t.Cleanup(func() { DefaultEndpoints = old })
	}
	t.Helper()
	var log bytes.Buffer
	r, err := New(slog.New(slog.NewTextHandler(&log, nil)), Options{
		Endpoints: eps, Every: 10 * time.Second, MinEvery: time.Second,
		Timeout: 2 * time.Second, ProcRoot: "/proc", Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	r.inode = fakeInodes(inodes)
	return r, &log
}

// podsResolver starts a fake runtime serving testPods() and a resolver on
// it (an explicit endpoint, its clock at 1000 s, inodes as testResolver
// takes them).
func podsResolver(t *testing.T, inodes map[string]uint64) (*fakecri.Server, *fakeClock, *Resolver, *bytes.Buffer) {
	t.Helper()
	srv := fakecri.Start(t)
	srv.Set(testPods())
	clock := &fakeClock{now: time.Unix(1000, 0)}
	r, log := testResolver(t, []string{srv.Sock}, true, clock, inodes)
	return srv, clock, r, log
}

func listing() []inventory.Namespace {
	return []inventory.Namespace{
		{Inode: 1, Name: "host", Kind: inventory.KindHost},
		{Inode: 2, Name: "cni-web", Kind: inventory.KindNamed},
		{Inode: 3, Name: "bbbbbbbbbbbb", Kind: inventory.KindProcess, PID: 200},
		{Inode: 4, Name: "pid-sleep-400", Kind: inventory.KindProcess, PID: 400},
	}
}

type named struct {
	Name, PodNamespace, PodName string
	RuntimeNamed                bool
}

// wantNames is how listing()'s namespaces come out named from testPods():
// the host's and pid 400's namespaces are no pod's, the dns pod names its
// own; web is what becomes of the web pod's, and more follow.
func wantNames(web named, more ...named) []named {
	return append([]named{
		{"host", "", "", false},
		web,
		{"kube-system/dns", "kube-system", "dns", true},
		{"pid-sleep-400", "", "", false},
	}, more...)
}

// checkNames fails t unless list is named as want says.
func checkNames(t *testing.T, list []inventory.Namespace, want []named) {
	t.Helper()
	var got []named
	for _, ns := range list {
		got = append(got, named{ns.Name, ns.PodNamespace, ns.PodName, ns.RuntimeNamed})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

// TestResolverNames: pods name their namespaces by inode (path first, else
// the sandbox's pid); the listing is reused for Every, refreshed early
// (at most once per MinEvery) when an unknown namespace appears, and a
// pod whose namespace is gone names nothing even from a cached listing.
func TestResolverNames(t *testing.T) {
	inodes := map[string]uint64{"/run/netns/cni-web": 2, "/proc/200/ns/net": 3, "/proc/300/ns/net": 1}
	srv, clock, r, _ := podsResolver(t, inodes)

	list := listing()
	r.Name(list)
	checkNames(t, list, wantNames(named{"default/web", "default", "web", true}))
	if n := srv.Lists(); n != 1 {
		t.Fatalf("%d listings, want 1", n)
	}
	// Same namespaces, inside Every: the cached listing serves.
	clock.Add(5 * time.Second)
	r.Name(listing())
	if n := srv.Lists(); n != 1 {
		t.Errorf("within Every: %d listings, want 1", n)
	}
	// A new namespace within MinEvery of the last refresh: no refresh yet.
	r.Name(append(listing(), inventory.Namespace{Inode: 5, Name: "cni-new", Kind: inventory.KindNamed}))
	if n := srv.Lists(); n != 2 {
		t.Errorf("new namespace: %d listings, want 2", n)
	}
	pods, conts := testPods()
	pods = append(pods, fakecri.Pod{ID: "sb-new", Namespace: "default", Name: "new", NetnsPath: "/run/netns/cni-new"})
	srv.Set(pods, conts)
	inodes["/run/netns/cni-new"] = 5
	list = append(listing(), inventory.Namespace{Inode: 5, Name: "cni-new", Kind: inventory.KindNamed})
	r.Name(list) // inside MinEvery of the last refresh: still unknown
	if list[4].Name != "cni-new" || srv.Lists() != 2 {
		t.Errorf("within MinEvery: %q after %d listings, want cni-new after 2", list[4].Name, srv.Lists())
	}
	clock.Add(1500 * time.Millisecond)
	r.Name(list) // the unknown one was known unknown: no early refresh…
	if srv.Lists() != 2 {
		t.Errorf("a known unknown namespace refreshed the listing (%d)", srv.Lists())
	}
	clock.Add(10 * time.Second)
	r.Name(list) // …until Every
	if list[4].Name != "default/new" || srv.Lists() != 3 {
		t.Errorf("after Every: %q after %d listings, want default/new after 3", list[4].Name, srv.Lists())
	}
	// The web pod's namespace goes (its inode may be reused at once): from
	// the cached listing, it names nothing.
	delete(inodes, "/run/netns/cni-web")
	list = listing()
	list[1].Name = "cni-reused"
	r.Name(list)
	if list[1].Name != "cni-reused" || list[1].RuntimeNamed {
		t.Errorf("a deleted pod's inode: %+v, want it unnamed", list[1])
	}
	if got := r.Pods(); len(got) != 2 || got[3].Name != "dns" || got[5].Name != "new" {
		t.Errorf("Pods() = %+v", got)
	}
}

// TestResolverNamesByContainerID: a pod whose namespace neither its netns
// path nor its pid reveals (a runtime without verbose status) names the
// process-held namespace inventory named after one of its containers' ids;
// a named namespace that merely looks like an id is left alone.
func TestResolverNamesByContainerID(t *testing.T) {
	_, _, r, _ := podsResolver(t, map[string]uint64{}) // no path or pid resolves
	list := listing()
	list = append(list, inventory.Namespace{Inode: 9, Name: "aaaaaaaaaaaa", Kind: inventory.KindNamed})
	r.Name(list)
	checkNames(t, list, wantNames(named{"cni-web", "", "", false}, named{"aaaaaaaaaaaa", "", "", false}))
}

// TestResolverRuntimeDown: a runtime that stops answering costs its names,
// is said once in the log however many refreshes fail, and shows as
// ghostd_runtime_up 0; back up, it says so once and names again.
func TestResolverRuntimeDown(t *testing.T) {
	srv, clock, r, log := podsResolver(t, map[string]uint64{"/run/netns/cni-web": 2, "/proc/200/ns/net": 3})
	r.Name(listing())
	up := func(v float64) string {
		return `
# HELP ghostd_runtime_up Whether the container runtime answered its last listing (1) or not (0); pods are named from it.
# TYPE ghostd_runtime_up gauge
ghostd_runtime_up{endpoint="` + srv.Sock + `",runtime="cri"} ` + map[float64]string{0: "0", 1: "1"}[v] + "\n"
	}
	if err := testutil.CollectAndCompare(r, strings.NewReader(up(1))); err != nil {
		t.Error(err)
	}
	srv.Stop()
	for range 3 {
		clock.Add(11 * time.Second)
		list := listing()
		r.Name(list)
		if list[1].Name != "cni-web" || list[2].Name != "bbbbbbbbbbbb" {
			t.Fatalf("runtime down, yet %q and %q", list[1].Name, list[2].Name)
		}
	}
	if err := testutil.CollectAndCompare(r, strings.NewReader(up(0))); err != nil {
		t.Error(err)
	}
	if n := strings.Count(log.String(), "container runtime unreachable"); n != 1 {
		t.Errorf("%d log lines say the runtime is unreachable, want 1:\n%s", n, log)
	}
	if n := strings.Count(log.String(), "container runtime answers"); n != 1 {
		t.Errorf("%d log lines say the runtime answers, want 1:\n%s", n, log)
	}
	if _, ok := r.Container(idWeb); ok {
		t.Error("runtime down, yet its containers are still named")
	}
}

// TestResolverAbsentDefaults: a default endpoint whose socket does not
// exist is not exported, and only one line says no runtime was found; an
// explicit one is exported and logged.
func TestResolverAbsentDefaults(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "containerd.sock")
	clock := &fakeClock{now: time.Unix(1000, 0)}
	r, log := testResolver(t, []string{missing}, false, clock, nil)
	r.Name(listing())
	if n, err := testutil.GatherAndCount(registry(t, r)); err != nil || n != 0 {
		t.Errorf("absent default endpoint: %d series (%v), want none", n, err)
	}
	r.Name(listing())
	if n := strings.Count(log.String(), "level="); n != 1 || !strings.Contains(log.String(), "no container runtime socket found") {
		t.Errorf("absent default endpoint: want one line saying no runtime was found, got:\n%s", log)
	}
	missing = filepath.Join(t.TempDir(), "containerd.sock") // not among the defaults
	r, log = testResolver(t, []string{missing}, true, clock, nil)
	r.Name(listing())
	if err := testutil.CollectAndCompare(r, strings.NewReader(`
# HELP ghostd_runtime_up Whether the container runtime answered its last listing (1) or not (0); pods are named from it.
# TYPE ghostd_runtime_up gauge
ghostd_runtime_up{endpoint="`+missing+`",runtime="containerd"} 0
`)); err != nil {
		t.Error(err)
	}
	if !strings.Contains(log.String(), "runtime socket does not exist") {
		t.Errorf("explicit endpoint's absence not logged:\n%s", log)
	}
}

func registry(t *testing.T, c prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	return reg
}

type fakeOwners map[uint32]inventory.Owner

func (f fakeOwners) Each(_ uint64, inodes []uint32, fn func(uint32, inventory.Owner)) {
	for _, ino := range inodes {
		if o, ok := f[ino]; ok {
			fn(ino, o)
		}
	}
}

// TestOwnersContainerNames: an owner whose cgroup names a container (by its
// 12-digit short id) gets the runtime's container name and pod; others are
// left alone.
func TestOwnersContainerNames(t *testing.T) {
	_, _, r, _ := podsResolver(t, nil)
	r.Refresh(context.Background())
	got := map[uint32]inventory.Owner{}
	r.Owners(fakeOwners{
		1: {PID: 10, Comm: "nginx", Container: idWeb[:12]},
		2: {PID: 20, Comm: "sshd", Unit: "ssh.service"},
		3: {PID: 30, Comm: "x", Container: "cccccccccccc"},
	}).Each(0, []uint32{1, 2, 3}, func(ino uint32, o inventory.Owner) { got[ino] = o })
	want := map[uint32]inventory.Owner{
		1: {PID: 10, Comm: "nginx", Container: idWeb[:12], ContainerName: "nginx", PodNamespace: "default", PodName: "web"},
		2: {PID: 20, Comm: "sshd", Unit: "ssh.service"},
		3: {PID: 30, Comm: "x", Container: "cccccccccccc"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("owners (-want +got):\n%s", diff)
	}
	if c, ok := r.Container(idDNS); !ok || c.Name != "coredns" {
		t.Errorf("Container(full id) = %+v, %v", c, ok)
	}
	if _, ok := r.Container(idDNS[:6]); ok {
		t.Error("a 6-digit prefix matched a container")
	}
}

// TestDockerList: the Docker source over a real unix socket: a cri-dockerd
// pod sandbox names its namespace after the pod, its containers carry their
// Kubernetes names, a plain container with its own namespace is a "pod"
// named after itself, and host-network containers name no namespace.
func TestDockerList(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containers/json", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`[
 {"Id":"s1","Names":["/k8s_POD_web_default_u1_0"],"Labels":{"io.kubernetes.pod.name":"web","io.kubernetes.pod.namespace":"default","io.kubernetes.pod.uid":"u1","io.kubernetes.docker.type":"podsandbox"},"HostConfig":{"NetworkMode":"default"}},
 {"Id":"c1","Names":["/k8s_nginx_web_default_u1_0"],"Labels":{"io.kubernetes.pod.name":"web","io.kubernetes.pod.namespace":"default","io.kubernetes.container.name":"nginx","io.kubernetes.docker.type":"container"},"HostConfig":{"NetworkMode":"container:s1"}},
 {"Id":"p1","Names":["/redis"],"Labels":{},"HostConfig":{"NetworkMode":"bridge"}},
 {"Id":"h1","Names":["/agent"],"Labels":{},"HostConfig":{"NetworkMode":"host"}}
]`))
	})
	mux.HandleFunc("GET /containers/{id}/json", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("id") {
		case "s1":
			w.Write([]byte(`{"State":{"Pid":111},"NetworkSettings":{"SandboxKey":"/var/run/docker/netns/aaa"}}`))
		case "p1":
			w.Write([]byte(`{"State":{"Pid":222},"NetworkSettings":{"SandboxKey":"/var/run/docker/netns/bbb"}}`))
		default:
			http.NotFound(w, r)
		}
	})
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	src, err := NewSource(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Runtime() != "docker" {
		t.Errorf("Runtime() = %q, want docker", src.Runtime())
	}
	got, err := src.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Snapshot{
		Pods: []Pod{
			{Namespace: "default", Name: "web", UID: "u1", NetnsPath: "/var/run/docker/netns/aaa", PID: 111},
			{Name: "redis", NetnsPath: "/var/run/docker/netns/bbb", PID: 222, Docker: true},
		},
		Containers: []Container{
			{ID: "c1", Name: "nginx", PodNamespace: "default", PodName: "web"},
			{ID: "p1", Name: "redis"},
			{ID: "h1", Name: "agent"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if p := got.Pods[1]; p.NetnsName() != "redis" {
		t.Errorf("a plain container's netns name = %q", p.NetnsName())
	}
}

func TestNewSource(t *testing.T) {
	for _, tt := range []struct {
		ep, runtime, err string
	}{
		{"/run/containerd/containerd.sock", "containerd", ""},
		{"unix:///run/crio/crio.sock", "crio", ""},
		{"/var/run/docker.sock", "docker", ""},
		{"docker:/run/user/1000/podman.sock", "docker", ""},
		{"cri:/run/cri-dockerd.sock", "cri-dockerd", ""},
		{"run/containerd.sock", "", "want an absolute unix socket path"},
	} {
		s, err := NewSource(tt.ep)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("NewSource(%q) err = %v, want %q", tt.ep, err, tt.err)
			}
			continue
		}
		if err != nil || s.Runtime() != tt.runtime {
			t.Errorf("NewSource(%q) = %v, %v; want runtime %s", tt.ep, s, err, tt.runtime)
		}
	}
}

// TestSlowRuntimeBlocksNoScrape: while a listing waits on a slow runtime,
// Collect (a scrape) and Container (an owner lookup) answer at once.
func TestSlowRuntimeBlocksNoScrape(t *testing.T) {
	srv, clock, r, _ := podsResolver(t, nil)
	r.Refresh(context.Background())
	srv.SetDelay(1500 * time.Millisecond)
	clock.Add(time.Minute)
	done := make(chan struct{})
	go func() { r.Name(listing()); close(done) }()
	time.Sleep(200 * time.Millisecond) // the listing is under way
	start := time.Now()
	if n := testutil.CollectAndCount(r); n != 1 {
		t.Errorf("%d series, want 1", n)
	}
	if _, ok := r.Container(idWeb); !ok {
		t.Error("the cached containers are gone during a refresh")
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Collect and Container took %v during a slow listing, want them not to wait for it", d)
	}
	<-done
}
