package engine

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/tracker"
)

// sourceInv is fakeInv that says which source served each namespace.
type sourceInv struct {
	fakeInv
	source map[uint64]string
}

func (f *sourceInv) Scan(ctx context.Context, states inventory.StateMask, fn func(*inventory.Namespace, *inventory.Socket) error) []inventory.NamespaceResult {
	out := f.fakeInv.Scan(ctx, states, fn)
	for i := range out {
		out[i].Source = f.source[out[i].Inode]
	}
	return out
}

// TestNamespaceSource: the JSON document says how each namespace's sockets
// were listed.
func TestNamespaceSource(t *testing.T) {
	inv := &sourceInv{
		fakeInv: fakeInv{ns: []inventory.Namespace{{Inode: 1, Name: "host"}, {Inode: 2, Name: "pod"}}},
		source:  map[uint64]string{1: inventory.SourceWalk, 2: inventory.SourceSockDiag},
	}
	e := New(inv, nil, nil, Options{Tracker: tracker.Config{Idle: time.Minute}})
	e.Scan(context.Background())
	snap, _ := e.Snapshot()
	want := []exporter.NamespaceStatus{
		{Netns: "host", NetnsInode: 1, Source: "bpf_walk"},
		{Netns: "pod", NetnsInode: 2, Source: "sock_diag"},
	}
	if diff := cmp.Diff(want, snap.Doc.Namespaces); diff != "" {
		t.Errorf("namespaces (-want +got):\n%s", diff)
	}
}
