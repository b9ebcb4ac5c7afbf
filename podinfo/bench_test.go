package podinfo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/fakecri"
	"github.com/ghostd/ghostd/inventory"
)

// benchNode is a full node: 110 pods of two containers each, and the
// listing inventory makes of their namespaces.
func benchNode(b *testing.B) (*fakecri.Server, map[string]uint64, []inventory.Namespace) {
	srv := fakecri.Start(b)
	var pods []fakecri.Pod
	var conts []fakecri.Container
	inodes := map[string]uint64{}
	list := []inventory.Namespace{{Inode: 1, Name: "host", Kind: inventory.KindHost}}
	for i := range 110 {
		id := fmt.Sprintf("%064x", i+1)
		path := fmt.Sprintf("/run/netns/cni-%d", i)
		pods = append(pods, fakecri.Pod{ID: id, Namespace: "ns", Name: fmt.Sprintf("pod-%d", i), NetnsPath: path, PID: 1000 + i})
		for j := range 2 {
			conts = append(conts, fakecri.Container{ID: fmt.Sprintf("%063x%d", i+1, j), Name: fmt.Sprintf("c%d", j), PodID: id})
		}
		inodes[path] = uint64(100 + i)
		list = append(list, inventory.Namespace{Inode: uint64(100 + i), Name: fmt.Sprintf("cni-%d", i), Kind: inventory.KindNamed})
	}
	srv.Set(pods, conts)
	return srv, inodes, list
}

// BenchmarkResolverName is the per-scan cost of naming a full node's
// namespaces from a cached listing (inode checks included, here faked).
func BenchmarkResolverName(b *testing.B) {
	srv, inodes, list := benchNode(b)
	r, err := New(nil, Options{Endpoints: []string{srv.Sock}, Every: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	r.inode = fakeInodes(inodes)
	work := make([]inventory.Namespace, len(list))
	copy(work, list)
	r.Name(work)
	if work[1].Name != "ns/pod-0" {
		b.Fatalf("not named: %+v", work[1])
	}
	b.ReportAllocs()
	for b.Loop() {
		copy(work, list)
		r.Name(work)
	}
}

// BenchmarkResolverRefresh is one listing of a full node over gRPC:
// ListPodSandbox, 110 PodSandboxStatus, ListContainers.
func BenchmarkResolverRefresh(b *testing.B) {
	srv, _, _ := benchNode(b)
	r, err := New(nil, Options{Endpoints: []string{srv.Sock}})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.ReportAllocs()
	for b.Loop() {
		r.Refresh(context.Background())
	}
	if len(r.pods) != 110 {
		b.Fatalf("%d pods listed, want 110", len(r.pods))
	}
}
