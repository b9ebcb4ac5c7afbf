package exporter

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestPodInfo: a namespace the runtime named after a pod gets one
// ghostd_pod_info series; other namespaces get none.
func TestPodInfo(t *testing.T) {
	snap := fixtureSnapshot()
	snap.Doc.Namespaces = append(snap.Doc.Namespaces, NamespaceStatus{Netns: "shop/cart-7d9f", NetnsInode: 4026532999, Kind: "named",
		Pod: "cart-7d9f", K8sNamespace: "shop"})
	s := NewStore(testBld, func() time.Time { return t0 })
	s.Publish(snap)
	err := testutil.GatherAndCompare(NewRegistry(s), strings.NewReader(`
# HELP ghostd_pod_info Scanned network namespaces that are a Kubernetes pod's, as the container runtime names them (netns is <k8s_namespace>/<pod>); always 1.
# TYPE ghostd_pod_info gauge
ghostd_pod_info{k8s_namespace="shop",netns="shop/cart-7d9f",pod="cart-7d9f"} 1
`), "ghostd_pod_info")
	if err != nil {
		t.Error(err)
	}
}

// TestSessionPodFields: the runtime's names are in the JSON beside the
// contract's fields, and the page prefers the container's name to its id.
func TestSessionPodFields(t *testing.T) {
	ss := Session{Netns: "shop/cart-7d9f", Container: "0123456789ab", ContainerName: "cart", Pod: "cart-7d9f", K8sNamespace: "shop"}
	b, err := json.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"container":"0123456789ab"`, `"container_name":"cart"`, `"pod":"cart-7d9f"`, `"k8s_namespace":"shop"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	if got := unitOrContainer(&ss); got != "cart" {
		t.Errorf("page's unit column = %q, want the container's name", got)
	}
	ss.ContainerName = ""
	if got := unitOrContainer(&ss); got != "0123456789ab" {
		t.Errorf("page's unit column without a runtime = %q, want the container id", got)
	}
}
