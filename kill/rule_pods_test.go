package kill

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ghostd/ghostd/inventory"
)

// TestRulePodsAndContainers: pods match "<k8s namespace>/<pod>" patterns
// and containers the runtime's container names; as deny rules they fail
// closed when the socket may be a pod's the runtime did not name, and
// never for a plain host process.
func TestRulePodsAndContainers(t *testing.T) {
	sock := inventory.Socket{Local: netip.MustParseAddrPort("198.51.100.2:40000"), Remote: netip.MustParseAddrPort("192.0.2.7:5432")}
	cart := Candidate{Socket: sock, Netns: "shop/cart-7d9f", PID: 10, Comm: "cart", Pod: "shop/cart-7d9f", Container: "cart", InContainer: true}
	named := Candidate{Socket: sock, Netns: "0123456789ab", PID: 11, Comm: "cart", InContainer: true} // runtime down
	orphan := Candidate{Socket: sock, Netns: "cni-1234"}                                              // no owner found
	host := Candidate{Socket: sock, Netns: "host", PID: 12, Comm: "psql", Unit: "x.service"}
	for _, tt := range []struct {
		name          string
		rule          Rule
		c             Candidate
		match, denies bool
	}{
		{"pod pattern", Rule{Pods: []string{"shop/*"}}, cart, true, true},
		{"other pod", Rule{Pods: []string{"kube-system/*"}}, cart, false, false},
		{"container", Rule{Containers: []string{"cart"}}, cart, true, true},
		{"other container", Rule{Containers: []string{"istio-proxy"}}, cart, false, false},
		{"pod and port", Rule{Pods: []string{"shop/*"}, Ports: []int{6379}}, cart, false, false},
		{"unnamed container: deny fails closed", Rule{Pods: []string{"kube-system/*"}}, named, false, true},
		{"no owner: deny fails closed", Rule{Containers: []string{"etcd"}}, orphan, false, true},
		{"host process is no pod", Rule{Pods: []string{"*/*"}}, host, false, false},
		{"pod-named netns", Rule{Netns: []string{"shop/*"}}, cart, true, true},
		{"other pod-named netns", Rule{Netns: []string{"kube-system/*"}}, cart, false, false},
		{"pod-named netns, unnamed container: deny fails closed", Rule{Netns: []string{"kube-system/*"}}, named, false, true},
		{"pod-named netns, no owner: deny fails closed", Rule{Netns: []string{"kube-system/*"}}, orphan, false, true},
		{"pod-named netns and another port still decide", Rule{Netns: []string{"kube-system/*"}, Ports: []int{6379}}, named, false, false},
		{"host netns is no pod's", Rule{Netns: []string{"*/*"}}, host, false, false},
		{"plain netns pattern decides on the name", Rule{Netns: []string{"cni-*"}}, named, false, false},
	} {
		c := tt.c
		if got := tt.rule.Matches(&c); got != tt.match {
			t.Errorf("%s: Matches = %v, want %v", tt.name, got, tt.match)
		}
		if got := tt.rule.Denies(&c); got != tt.denies {
			t.Errorf("%s: Denies = %v, want %v", tt.name, got, tt.denies)
		}
	}
}

func TestRulePodsValidate(t *testing.T) {
	for _, tt := range []struct {
		rule Rule
		err  string
	}{
		{Rule{Pods: []string{"shop/*"}}, ""},
		{Rule{Containers: []string{"cart"}}, ""},
		{Rule{Pods: []string{""}}, "pods[0]: empty string"},
		{Rule{Containers: []string{"a["}}, "containers[0]: pattern"},
	} {
		err := tt.rule.validate()
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%+v: validate() = %v, want %q", tt.rule, err, tt.err)
		}
	}
}
