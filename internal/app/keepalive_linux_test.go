package app

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

type fakeSeq map[uint64]probe.SeqState

func (f fakeSeq) ReadSeq(_ context.Context, _ string, cookies []uint64) (map[uint64]probe.SeqState, error) {
	out := map[uint64]probe.SeqState{}
	for _, c := range cookies {
		if st, ok := f[c]; ok {
			out[c] = st
		}
	}
	return out, nil
}

// TestKeepaliveTap: what the prober reads passes through unchanged, and each
// socket's own keepalive settings reach the sink under the socket's key.
func TestKeepaliveTap(t *testing.T) {
	redis := probe.SeqState{SndNxt: 7, KeepTime: 300 * time.Second, KeepIntvl: 100 * time.Second, KeepProbes: 3, UserTimeout: 5 * time.Second}
	got := map[inventory.Key]tracker.KeepaliveSettings{}
	tap := &keepaliveTap{SeqReader: fakeSeq{42: redis, 43: {}}, sink: func(k inventory.Key, ka tracker.KeepaliveSettings) { got[k] = ka }}
	m, err := tap.ReadSeq(context.Background(), "", []uint64{42, 43, 44})
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m[42] != redis {
		t.Errorf("states not passed through: %+v", m)
	}
	fi, err := os.Stat("/proc/thread-self/ns/net")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	self := fi.Sys().(*syscall.Stat_t).Ino
	want := map[inventory.Key]tracker.KeepaliveSettings{
		{Netns: self, Cookie: 42}: {Time: 300 * time.Second, Intvl: 100 * time.Second, Probes: 3, UserTimeout: 5 * time.Second},
		{Netns: self, Cookie: 43}: {},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sink (-want +got):\n%s", diff)
	}
}
