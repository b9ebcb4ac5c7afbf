package kubernetes

import (
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/config"
	"github.com/ghostd/ghostd/kill"
	"github.com/ghostd/ghostd/podinfo"
)

// TestDaemonSetRuntimeSocket: containerd's CRI socket is mounted read-only,
// alone (not its directory, which holds the shims' sockets too), as a
// socket (the pod does not start rather than run without names), at the
// path ghostd asks by default.
func TestDaemonSetRuntimeSocket(t *testing.T) {
	m := load(t)
	pod := m.DaemonSet.Spec.Template.Spec
	c := container(t, m.DaemonSet)
	var mount *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		if vm.MountPath == containerdSock {
			mount = &c.VolumeMounts[i]
		}
		if vm.MountPath == "/run/containerd" || vm.MountPath == "/run" || vm.MountPath == "/var/run" {
			t.Errorf("volumeMount %s over %s: mount the socket alone", vm.Name, vm.MountPath)
		}
	}
	if mount == nil {
		t.Fatalf("%s is not mounted: pods would be named after cgroup ids", containerdSock)
	}
	if !mount.ReadOnly {
		t.Errorf("%s is mounted read-write, want readOnly", containerdSock)
	}
	if !slices.Contains(podinfo.DefaultEndpoints, mount.MountPath) {
		t.Errorf("mounted at %s, which ghostd does not ask by default (%v)", mount.MountPath, podinfo.DefaultEndpoints)
	}
	for _, v := range pod.Volumes {
		if v.Name != mount.Name {
			continue
		}
		if v.HostPath == nil || v.HostPath.Path != containerdSock || v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathSocket {
			t.Errorf("volume %s is %+v, want hostPath %s of type Socket", v.Name, v.VolumeSource, containerdSock)
		}
	}
}

// TestCRIOOverlay: crio/ swaps containerd's socket for CRI-O's, at the path
// ghostd asks by default, and removes the base's mount of containerd's.
func TestCRIOOverlay(t *testing.T) {
	var k Kustomization
	decodeFile(t, "crio/kustomization.yaml", &k)
	if len(k.Resources) != 1 || k.Resources[0] != ".." || len(k.Patches) != 1 || k.Patches[0].Path != "daemonset-patch.yaml" {
		t.Errorf("crio/ kustomization: resources %v patches %v", k.Resources, k.Patches)
	}
	b, err := os.ReadFile("crio/daemonset-patch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Loosely decoded: a strategic merge patch's $patch directive is no
	// field of the API type.
	var patch struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Name         string           `json:"name"`
						VolumeMounts []map[string]any `json:"volumeMounts"`
					} `json:"containers"`
					Volumes []corev1.Volume `json:"volumes"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &patch); err != nil {
		t.Fatal(err)
	}
	const crio = "/run/crio/crio.sock"
	m := load(t)
	ps := patch.Spec.Template.Spec
	if patch.Metadata.Name != m.DaemonSet.Name || len(ps.Containers) != 1 || ps.Containers[0].Name != container(t, m.DaemonSet).Name {
		t.Fatalf("the patch targets %s container %+v, not the base's", patch.Metadata.Name, ps.Containers)
	}
	var deleted, mounted bool
	for _, vm := range ps.Containers[0].VolumeMounts {
		switch vm["mountPath"] {
		case containerdSock:
			deleted = vm["$patch"] == "delete"
		case crio:
			mounted = vm["readOnly"] == true && vm["name"] == "runtime"
		}
	}
	if !deleted || !mounted {
		t.Errorf("crio/ mounts: containerd's deleted %v, CRI-O's read-only %v: %v", deleted, mounted, ps.Containers[0].VolumeMounts)
	}
	if len(ps.Volumes) != 1 || ps.Volumes[0].HostPath == nil || ps.Volumes[0].HostPath.Path != crio ||
		ps.Volumes[0].HostPath.Type == nil || *ps.Volumes[0].HostPath.Type != corev1.HostPathSocket {
		t.Errorf("crio/ volumes %+v, want runtime = hostPath %s of type Socket", ps.Volumes, crio)
	}
	if !slices.Contains(podinfo.DefaultEndpoints, crio) {
		t.Errorf("%s is not among ghostd's default endpoints %v", crio, podinfo.DefaultEndpoints)
	}
}

func decodeFile(t *testing.T, path string, obj any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestKillOverlay: kill/ patches the base objects by name, adds only
// NET_ADMIN, and its ghostd.yml is the base's with the kill policy on.
func TestKillOverlay(t *testing.T) {
	m := load(t)
	var k Kustomization
	decodeFile(t, "kill/kustomization.yaml", &k)
	if diff := cmp.Diff([]string{".."}, k.Resources); diff != "" {
		t.Errorf("kill/ resources (-want +got):\n%s", diff)
	}
	var paths []string
	for _, p := range k.Patches {
		paths = append(paths, p.Path)
	}
	if diff := cmp.Diff([]string{"daemonset-patch.yaml", "configmap-patch.yaml"}, paths); diff != "" {
		t.Errorf("kill/ patches (-want +got):\n%s", diff)
	}

	var ds appsv1.DaemonSet
	decodeFile(t, "kill/daemonset-patch.yaml", &ds)
	if ds.Name != m.DaemonSet.Name || ds.Namespace != m.DaemonSet.Namespace || container(t, &ds).Name != container(t, m.DaemonSet).Name {
		t.Errorf("the DaemonSet patch targets %s/%s container %s, not the base's", ds.Namespace, ds.Name, container(t, &ds).Name)
	}
	want := append(append([]string{}, wantCaps...), "NET_ADMIN")
	sort.Strings(want)
	if diff := cmp.Diff(want, addedCaps(t, &ds)); diff != "" {
		t.Errorf("kill overlay capabilities (-want +got):\n%s", diff)
	}

	var cm corev1.ConfigMap
	decodeFile(t, "kill/configmap-patch.yaml", &cm)
	if cm.Name != m.ConfigMap.Name || cm.Namespace != m.ConfigMap.Namespace {
		t.Errorf("the ConfigMap patch targets %s/%s, not the base's", cm.Namespace, cm.Name)
	}
	base, err := config.Parse([]byte(m.ConfigMap.Data["ghostd.yml"]), "configmap.yaml:ghostd.yml")
	if err != nil {
		t.Fatal(err)
	}
	killing, err := config.Parse([]byte(cm.Data["ghostd.yml"]), "kill/configmap-patch.yaml:ghostd.yml")
	if err != nil {
		t.Fatal(err)
	}
	if base.Kill.Enabled {
		t.Error("the base ConfigMap kills, but the base DaemonSet lacks CAP_NET_ADMIN: report only there")
	}
	if !killing.Kill.Enabled || killing.Kill.Mode != kill.ModeDestroy {
		t.Errorf("kill overlay: kill.enabled=%v mode=%q, want true and destroy (the mode CAP_NET_ADMIN is for)", killing.Kill.Enabled, killing.Kill.Mode)
	}
	base.Kill = killing.Kill
	if diff := cmp.Diff(base, killing); diff != "" {
		t.Errorf("kill overlay's ghostd.yml differs from the base's outside kill: (-base +overlay):\n%s", diff)
	}
}

func TestDaemonSetRunsEverywhereAndSurvives(t *testing.T) {
	m := load(t)
	ds := m.DaemonSet
	pod := ds.Spec.Template.Spec
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", pod.PriorityClassName)
	}
	tolerateAll := false
	for _, tol := range pod.Tolerations {
		if tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == "" {
			tolerateAll = true
		}
	}
	if !tolerateAll {
		t.Errorf("tolerations %+v do not tolerate every taint ({operator: Exists})", pod.Tolerations)
	}
	if len(pod.NodeSelector) > 0 || pod.Affinity != nil {
		t.Errorf("nodeSelector %v / affinity %v restrict the nodes; ghostd belongs on every node", pod.NodeSelector, pod.Affinity)
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the template labels %v", sel, ds.Spec.Template.Labels)
	}
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType {
		t.Errorf("updateStrategy %q, want RollingUpdate", ds.Spec.UpdateStrategy.Type)
	}

	c := container(t, ds)
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() {
		t.Errorf("requests %v: want cpu and memory", req)
	}
	maxMem := resource.MustParse("128Mi")
	if lim.Memory().IsZero() || lim.Memory().Cmp(maxMem) > 0 {
		t.Errorf("memory limit %v, want set and at most %v (the RSS target)", lim.Memory(), &maxMem)
	}
	if req.Memory().Cmp(*lim.Memory()) > 0 {
		t.Errorf("memory request %v above the limit %v", req.Memory(), lim.Memory())
	}
	if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
		t.Errorf("image %q: pin a version", c.Image)
	}
	// Measured (docs/kubernetes.md): 33 MiB peak RSS with 6 000 probed
	// suspects; the request must cover that with room.
	if minReq := resource.MustParse("48Mi"); req.Memory().Cmp(minReq) < 0 {
		t.Errorf("memory request %v below %v: the measured peak at a few thousand sockets is 33 MiB", req.Memory(), &minReq)
	}
	memLimit := false
	for _, env := range c.Env {
		if env.Name == "GOMEMLIMIT" {
			memLimit = true
			q, err := resource.ParseQuantity(strings.TrimSuffix(env.Value, "B"))
			if err != nil {
				t.Errorf("GOMEMLIMIT %q: %v", env.Value, err)
			} else if q.Cmp(*lim.Memory()) >= 0 || q.Cmp(*req.Memory()) < 0 {
				t.Errorf("GOMEMLIMIT %v not between the memory request %v and limit %v", &q, req.Memory(), lim.Memory())
			}
		}
	}
	if !memLimit {
		t.Error("GOMEMLIMIT is not set: the Go heap would grow to the limit and be OOM-killed")
	}

	// Probes hit the daemon's own endpoints on its named port.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
		if pod.HostNetwork && p.HostPort != p.ContainerPort {
			t.Errorf("port %s: hostPort %d must equal containerPort %d with hostNetwork", p.Name, p.HostPort, p.ContainerPort)
		}
	}
	for name, want := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{"liveness": {c.LivenessProbe, "/-/healthy"}, "readiness": {c.ReadinessProbe, "/-/ready"}} {
		p := want.probe
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET of %s", name, want.path)
			continue
		}
		if p.HTTPGet.Path != want.path {
			t.Errorf("%s probe path %q, want %q", name, p.HTTPGet.Path, want.path)
		}
		if _, ok := ports[p.HTTPGet.Port.String()]; !ok {
			t.Errorf("%s probe port %q is not a named container port", name, p.HTTPGet.Port.String())
		}
	}
}

// TestConfigIsValidAndMatchesPorts: the ConfigMap's ghostd.yml passes
// ghostd's own validation, and the port it listens on is the one the
// DaemonSet exposes and probes: the default listen port.
func TestConfigIsValidAndMatchesPorts(t *testing.T) {
	m := load(t)
	text, ok := m.ConfigMap.Data["ghostd.yml"]
	if !ok {
		t.Fatal("ConfigMap has no ghostd.yml")
	}
	cfg, err := config.Parse([]byte(text), "configmap.yaml:ghostd.yml")
	if err != nil {
		t.Fatal(err)
	}
	if config.DefaultListenAddress != exporter.DefaultListenAddress {
		t.Fatalf("config and exporter disagree on the default listen address: %q vs %q", config.DefaultListenAddress, exporter.DefaultListenAddress)
	}
	_, defPort, err := net.SplitHostPort(exporter.DefaultListenAddress)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Web.ListenAddress) != 1 {
		t.Fatalf("listen addresses %v, want one", cfg.Web.ListenAddress)
	}
	_, port, err := net.SplitHostPort(cfg.Web.ListenAddress[0])
	if err != nil {
		t.Fatal(err)
	}
	if port != defPort {
		t.Errorf("ghostd.yml listens on port %s, the default is %s", port, defPort)
	}
	c := container(t, m.DaemonSet)
	var metrics int32
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			metrics = p.ContainerPort
		}
	}
	if strconv.Itoa(int(metrics)) != port {
		t.Errorf("container port metrics=%d, ghostd listens on %s", metrics, port)
	}

	// The config file is where the container reads it.
	var mountPath string
	for _, vm := range c.VolumeMounts {
		for _, v := range m.DaemonSet.Spec.Template.Spec.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == m.ConfigMap.Name {
				mountPath = vm.MountPath
			}
		}
	}
	if mountPath == "" {
		t.Fatal("the ConfigMap is not mounted")
	}
	wantArg := "--config=" + mountPath + "/ghostd.yml"
	found := false
	for _, a := range c.Args {
		found = found || a == wantArg
	}
	if len(c.Args) == 0 || c.Args[0] != "run" || !found {
		t.Errorf("args %q, want run ... %s", c.Args, wantArg)
	}
}

// TestPodMonitor: the scrape lands under job="ghostd" (what the alert rules
// select) with a node label (what the fleet rules aggregate by).
func TestPodMonitor(t *testing.T) {
	m := load(t)
	pm := m.PodMonitor
	tmpl := m.DaemonSet.Spec.Template
	sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Empty() || !sel.Matches(labels.Set(tmpl.Labels)) {
		t.Errorf("selector %v does not select the ghostd pods %v", sel, tmpl.Labels)
	}
	if got := tmpl.Labels[pm.Spec.JobLabel]; pm.Spec.JobLabel == "" || got != "ghostd" {
		t.Errorf("jobLabel %q gives job=%q, want job=\"ghostd\" (alerts/ghostd.rules.yml selects it)", pm.Spec.JobLabel, got)
	}
	if diff := cmp.Diff([]string{m.Namespace.Name}, pm.Spec.NamespaceSelector.MatchNames); diff != "" {
		t.Errorf("namespaceSelector (-want +got):\n%s", diff)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("%d endpoints, want 1", len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	named := false
	for _, p := range container(t, m.DaemonSet).Ports {
		named = named || p.Name == ep.Port
	}
	if !named || ep.Path != "/metrics" {
		t.Errorf("endpoint port %q path %q, want a named container port and /metrics", ep.Port, ep.Path)
	}
	node := false
	for _, r := range ep.Relabelings {
		if r.TargetLabel == "node" && cmp.Equal(r.SourceLabels, []string{"__meta_kubernetes_pod_node_name"}) && (r.Action == "" || r.Action == "replace") {
			node = true
		}
	}
	if !node {
		t.Errorf("relabelings %+v do not set node from __meta_kubernetes_pod_node_name", ep.Relabelings)
	}
}
