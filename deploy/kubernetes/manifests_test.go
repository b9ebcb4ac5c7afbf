package kubernetes

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// PodMonitor mirrors the fields of the Prometheus Operator's
// monitoring.coreos.com/v1 PodMonitor that these manifests use. Strict
// decoding into it rejects a misspelt or unsupported field.
type PodMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector"`
		PodMetricsEndpoints []struct {
			Port          string          `json:"port"`
			Path          string          `json:"path"`
			Scheme        string          `json:"scheme,omitempty"`
			Interval      string          `json:"interval"`
			ScrapeTimeout string          `json:"scrapeTimeout"`
			Relabelings   []RelabelConfig `json:"relabelings"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// RelabelConfig is the Prometheus Operator's RelabelConfig.
type RelabelConfig struct {
	SourceLabels []string `json:"sourceLabels,omitempty"`
	Separator    string   `json:"separator,omitempty"`
	TargetLabel  string   `json:"targetLabel,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Replacement  string   `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

// Kustomization mirrors the kustomize fields used here.
type Kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
}

// manifests holds every object, strictly decoded into its API type.
type manifests struct {
	Namespace      *corev1.Namespace
	ServiceAccount *corev1.ServiceAccount
	ConfigMap      *corev1.ConfigMap
	DaemonSet      *appsv1.DaemonSet
	PodMonitor     *PodMonitor
}

// alloc points *p at a new T and returns it, to be decoded into.
func alloc[T any](p **T) *T {
	*p = new(T)
	return *p
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m manifests
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("\n---")) {
			t.Fatalf("%s: one object per file, please", f)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(b, &tm); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Namespace":
			obj = alloc(&m.Namespace)
		case "v1 ServiceAccount":
			obj = alloc(&m.ServiceAccount)
		case "v1 ConfigMap":
			obj = alloc(&m.ConfigMap)
		case "apps/v1 DaemonSet":
			obj = alloc(&m.DaemonSet)
		case "monitoring.coreos.com/v1 PodMonitor":
			obj = alloc(&m.PodMonitor)
		default:
			t.Fatalf("%s: unexpected %s %s", f, tm.APIVersion, tm.Kind)
		}
		// Unknown and duplicate fields are errors: a typo such as
		// "mountPropogation" would otherwise be dropped without a word.
		if err := yaml.UnmarshalStrict(b, obj); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if m.Namespace == nil || m.ServiceAccount == nil || m.ConfigMap == nil || m.DaemonSet == nil || m.PodMonitor == nil {
		t.Fatalf("missing manifests: %+v", m)
	}
	return m
}

func TestStrictDecodingRejectsTypos(t *testing.T) {
	b := []byte("apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  template:\n    spec:\n      hostNetwrok: true\n")
	if err := yaml.UnmarshalStrict(b, &appsv1.DaemonSet{}); err == nil || !strings.Contains(err.Error(), "hostNetwrok") {
		t.Errorf("UnmarshalStrict accepted a misspelt field: %v", err)
	}
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k Kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("*.yaml")
	var want []string
	for _, f := range files {
		if f != "kustomization.yaml" {
			want = append(want, f)
		}
	}
	got := append([]string(nil), k.Resources...)
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kustomization resources (-want +got):\n%s", diff)
	}
}

func TestEverythingInOneNamespace(t *testing.T) {
	m := load(t)
	ns := m.Namespace.Name
	for kind, got := range map[string]string{
		"ServiceAccount": m.ServiceAccount.Namespace, "ConfigMap": m.ConfigMap.Namespace,
		"DaemonSet": m.DaemonSet.Namespace, "PodMonitor": m.PodMonitor.Namespace,
	} {
		if got != ns {
			t.Errorf("%s in namespace %q, want %q", kind, got, ns)
		}
	}
	// hostNetwork, hostPID, hostPath and extra capabilities are refused by
	// the baseline and restricted Pod Security Standards.
	if got := m.Namespace.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("namespace enforces pod security %q; the pod cannot be admitted unless it is privileged", got)
	}
}

func container(t *testing.T, ds *appsv1.DaemonSet) corev1.Container {
	t.Helper()
	if n := len(ds.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	return ds.Spec.Template.Spec.Containers[0]
}

func TestDaemonSetSeesEveryNamespace(t *testing.T) {
	m := load(t)
	pod := m.DaemonSet.Spec.Template.Spec
	if !pod.HostNetwork || !pod.HostPID {
		t.Errorf("hostNetwork=%v hostPID=%v, want both: ghostd must see the host's namespace and every process's /proc/PID/ns/net", pod.HostNetwork, pod.HostPID)
	}
	if pod.HostNetwork && pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q with hostNetwork, want ClusterFirstWithHostNet", pod.DNSPolicy)
	}
	c := container(t, m.DaemonSet)
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	var netns *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		if _, ok := volumes[vm.Name]; !ok {
			t.Errorf("volumeMount %s has no volume", vm.Name)
		}
		if vm.MountPath == "/run/netns" {
			netns = &c.VolumeMounts[i]
		}
		if vm.MountPath == "/proc" || strings.HasPrefix(vm.MountPath, "/proc/") {
			t.Errorf("volumeMount %s over %s: with hostPID the container's own /proc already is the host's", vm.Name, vm.MountPath)
		}
	}
	if netns == nil {
		t.Fatal("/run/netns is not mounted: named namespaces (ip netns, CNI) would be invisible")
	}
	if netns.MountPropagation == nil || *netns.MountPropagation != corev1.MountPropagationHostToContainer {
		t.Errorf("/run/netns mountPropagation %v, want HostToContainer so namespaces created later appear", netns.MountPropagation)
	}
	if v := volumes[netns.Name]; v.HostPath == nil || v.HostPath.Path != "/run/netns" {
		t.Errorf("/run/netns is mounted from %+v, want hostPath /run/netns", v.VolumeSource)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil && v.HostPath.Path != "/run/netns" && v.HostPath.Path != containerdSock {
			t.Errorf("volume %s mounts host path %s: only /run/netns and the runtime's socket are needed", v.Name, v.HostPath.Path)
		}
	}
}

// containerdSock is the runtime socket the base DaemonSet mounts.
const containerdSock = "/run/containerd/containerd.sock"

// wantCaps are the capabilities reporting uses: the same set as
// systemd/ghostd.service, written as Kubernetes spells them. Killing adds
// NET_ADMIN (the kill/ overlay, like systemd/ghostd-kill.conf).
var wantCaps = []string{"DAC_READ_SEARCH", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"}

func TestDaemonSetSecurity(t *testing.T) {
	m := load(t)
	pod := m.DaemonSet.Spec.Template.Spec
	c := container(t, m.DaemonSet)
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("container has no securityContext")
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	isFalse := func(b *bool) bool { return b != nil && !*b }
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("runAsUser %v, want 0", sc.RunAsUser)
	}
	if isTrue(sc.Privileged) {
		t.Error("privileged: true; ghostd needs only its capabilities")
	}
	if !isFalse(sc.AllowPrivilegeEscalation) {
		t.Errorf("allowPrivilegeEscalation %v, want false", sc.AllowPrivilegeEscalation)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("readOnlyRootFilesystem %v, want true", sc.ReadOnlyRootFilesystem)
	}
	if sc.Capabilities == nil {
		t.Fatal("no capabilities")
	}
	if diff := cmp.Diff([]corev1.Capability{"ALL"}, sc.Capabilities.Drop); diff != "" {
		t.Errorf("capabilities.drop (-want +got):\n%s", diff)
	}
	var add []string
	for _, c := range sc.Capabilities.Add {
		// The API refuses allowPrivilegeEscalation: false together with
		// "CAP_SYS_ADMIN" (but not "SYS_ADMIN"); keep one spelling.
		if strings.HasPrefix(string(c), "CAP_") {
			t.Errorf("capability %q: write it without CAP_, as Kubernetes does", c)
		}
		add = append(add, string(c))
	}
	sort.Strings(add)
	if diff := cmp.Diff(wantCaps, add); diff != "" {
		t.Errorf("capabilities.add (-want +got):\n%s", diff)
	}
	for _, prof := range []*corev1.SeccompProfile{sc.SeccompProfile, pod.SecurityContext.SeccompProfile} {
		if prof == nil || prof.Type == corev1.SeccompProfileTypeUnconfined {
			t.Errorf("seccompProfile %v: want RuntimeDefault or a Localhost profile, never unconfined", prof)
		}
	}
	if isTrue(pod.AutomountServiceAccountToken) || pod.AutomountServiceAccountToken == nil {
		t.Error("the pod mounts a service account token; ghostd never talks to the API server")
	}
	if isTrue(m.ServiceAccount.AutomountServiceAccountToken) || m.ServiceAccount.AutomountServiceAccountToken == nil {
		t.Error("the service account automounts its token")
	}
	if pod.ServiceAccountName != m.ServiceAccount.Name {
		t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, m.ServiceAccount.Name)
	}
	for _, v := range pod.Volumes {
		if v.EmptyDir == nil && v.ConfigMap == nil && v.HostPath == nil {
			t.Errorf("volume %s: unexpected kind %+v", v.Name, v.VolumeSource)
		}
	}
}

// unitCaps returns the capabilities in a systemd unit's
// CapabilityBoundingSet= lines, without the CAP_ prefix, sorted.
func unitCaps(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
			for _, c := range strings.Fields(v) {
				caps = append(caps, strings.TrimPrefix(c, "CAP_"))
			}
		}
	}
	sort.Strings(caps)
	return caps
}

func addedCaps(t *testing.T, ds *appsv1.DaemonSet) []string {
	t.Helper()
	sc := container(t, ds).SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no capabilities")
	}
	var add []string
	for _, c := range sc.Capabilities.Add {
		add = append(add, string(c))
	}
	sort.Strings(add)
	return add
}

// TestCapabilitiesMatchSystemdUnit keeps the DaemonSet and the systemd unit
// in step: the same capabilities for reporting, and the same one more for
// killing.
func TestCapabilitiesMatchSystemdUnit(t *testing.T) {
	if diff := cmp.Diff(wantCaps, unitCaps(t, "../../systemd/ghostd.service")); diff != "" {
		t.Errorf("systemd/ghostd.service CapabilityBoundingSet (-daemonset +unit):\n%s", diff)
	}
	unitKill := append(unitCaps(t, "../../systemd/ghostd.service"), unitCaps(t, "../../systemd/ghostd-kill.conf")...)
	sort.Strings(unitKill)
	var patch appsv1.DaemonSet
	decodeFile(t, "kill/daemonset-patch.yaml", &patch)
	if diff := cmp.Diff(unitKill, addedCaps(t, &patch)); diff != "" {
		t.Errorf("kill overlay capabilities vs the unit with ghostd-kill.conf (-unit +overlay):\n%s", diff)
	}
}
