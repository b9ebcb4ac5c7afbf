package inventory

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/inventory/bpfwalk"
)

// fakeWalker returns scripted records.
type fakeWalker struct {
	recs   []bpfwalk.Record
	err    error
	walks  int
	closed bool
	want   []uint64 // the last Walk's namespaces
	late   error    // returned after every record was passed
}

func (f *fakeWalker) Walk(ctx context.Context, netns []uint64, fn func(*bpfwalk.Record) error) (int, error) {
	f.want = netns
	f.walks++
	if f.err != nil {
		return 0, f.err
	}
	for i := range f.recs {
		r := f.recs[i]
		if err := fn(&r); err != nil {
			return i + 1, err
		}
	}
	return len(f.recs), f.late
}

func (f *fakeWalker) HZ() int         { return 1000 }
func (f *fakeWalker) Variant() string { return "fake" }
func (f *fakeWalker) Close() error    { f.closed = true; return nil }

func walkRec(netns uint32, cookie uint64, state State, info bool) bpfwalk.Record {
	r := bpfwalk.Record{Netns: netns, Cookie: cookie, Family: FamilyInet, State: uint8(state), SPort: uint16(cookie)}
	copy(r.Src[:], []byte{192, 0, 2, 1})
	if info {
		r.Flags = bpfwalk.FlagInfo
	}
	return r
}

type walkFakeResult struct {
	Name    string
	Sockets int
	Source  string
	Err     string
}

// TestScannerWalkFake covers which namespaces the Scanner takes from the
// walk: none on the first scan (each namespace is dumped once, which gives
// its sockets cookies), then every covered one; a namespace with TCP
// tables of its own, or with a socket that has no cookie, is dumped; a
// failed walk makes every namespace a dump for that scan.
func TestScannerWalkFake(t *testing.T) {
	k := &nsFakeKernel{
		nss: []Namespace{
			fakeHostNS(),
			fakeNamedNS(2, "blue"),
			fakeNamedNS(3, "own"),
			fakeProcNS(4, "fresh", 40),
		},
		sockets: map[uint64]int{1: 5, 2: 2, 3: 1, 4: 1},
	}
	var logBuf bytes.Buffer
	s := k.scanner(ScannerOptions{Workers: 2})
	s.log = slog.New(slog.NewTextHandler(&logBuf, nil))
	fw := &fakeWalker{recs: []bpfwalk.Record{
		walkRec(1, 101, StateEstablished, true),
		walkRec(2, 201, StateEstablished, true),
		walkRec(1, 102, StateListen, true),
		walkRec(3, 301, StateListen, true), // own tables: its listener is in the shared table
		walkRec(1, 103, StateTimeWait, false),
		walkRec(1, 0, StateSynRecv, false), // a request socket: no cookie, no dump
		walkRec(4, 0, StateEstablished, true),
		walkRec(99, 9901, StateEstablished, true), // not listed
	}}
	coversCalls := map[uint64]int{}
	s.walk = newWalkState(fw, func(ns *Namespace) (bool, error) {
		coversCalls[ns.Inode]++
		return ns.Inode != 3, nil
	})
	if s.Source() != SourceWalk {
		t.Fatalf("Source() = %q", s.Source())
	}

	scan := func(states StateMask) ([]walkFakeResult, map[uint64][]uint64) {
		got := map[uint64][]uint64{}
		var out []walkFakeResult
		for _, r := range s.Scan(context.Background(), states, func(ns *Namespace, sk *Socket) error {
			if ns.Inode != sk.Netns {
				t.Errorf("socket of netns %d delivered with namespace %d", sk.Netns, ns.Inode)
			}
			got[ns.Inode] = append(got[ns.Inode], sk.Cookie)
			return nil
		}) {
			fr := walkFakeResult{Name: r.Name, Sockets: r.Sockets, Source: r.Source}
			if r.Err != nil {
				fr.Err = r.Err.Error()
			}
			out = append(out, fr)
		}
		return out, got
	}

	want := []walkFakeResult{
		{"host", 5, SourceSockDiag, ""}, {"blue", 2, SourceSockDiag, ""},
		{"own", 1, SourceSockDiag, ""}, {"fresh", 1, SourceSockDiag, ""},
	}
	res, _ := scan(AllStates)
	if diff := cmp.Diff(want, res); diff != "" {
		t.Fatalf("first scan (-want +got):\n%s", diff)
	}
	if fw.walks != 0 {
		t.Errorf("first scan walked %d times; every namespace needs its dump first", fw.walks)
	}

	// fresh's socket has no cookie: left out of the walk, and fresh is
	// dumped at the next scan (which, on a real kernel, gives it one).
	wants := [][]walkFakeResult{{
		{"host", 4, SourceWalk, ""}, {"blue", 1, SourceWalk, ""},
		{"own", 1, SourceSockDiag, ""}, {"fresh", 0, SourceWalk, ""},
	}, {
		{"host", 4, SourceWalk, ""}, {"blue", 1, SourceWalk, ""},
		{"own", 1, SourceSockDiag, ""}, {"fresh", 1, SourceSockDiag, ""},
	}}
	for i, want := range wants {
		res, got := scan(AllStates)
		if diff := cmp.Diff(want, res); diff != "" {
			t.Fatalf("scan %d with the walk (-want +got):\n%s", i+2, diff)
		}
		if diff := cmp.Diff([]uint64{101, 102, 103, 0}, got[1]); diff != "" {
			t.Errorf("host's cookies (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]uint64{1}, got[3]); diff != "" {
			t.Errorf("own's sockets come from its dump, not the walk (-want +got):\n%s", diff)
		}
	}
	if fw.walks != 2 {
		t.Errorf("%d walks in 2 scans", fw.walks)
	}
	slices.Sort(fw.want)
	if diff := cmp.Diff([]uint64{1, 2}, fw.want); diff != "" {
		t.Errorf("the walk was asked for (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[uint64]int{1: 1, 2: 1, 3: 1, 4: 1}, coversCalls); diff != "" {
		t.Errorf("Covers is asked once per namespace (-want +got):\n%s", diff)
	}

	// The state mask applies to walked sockets too.
	res, _ = scan(StateEstablished.Mask())
	if res[0] != (walkFakeResult{"host", 1, SourceWalk, ""}) {
		t.Errorf("host with ESTABLISHED only: %+v", res[0])
	}

	// A failed walk: every namespace is dumped, and that is logged once.
	fw.err = errors.New("walk broke")
	for range 2 {
		res, _ = scan(AllStates)
		for _, r := range res {
			if r.Source != SourceSockDiag || r.Err != "" {
				t.Errorf("after a failed walk: %+v", r)
			}
		}
	}
	if n := strings.Count(logBuf.String(), "walk broke"); n != 1 {
		t.Errorf("walk failure logged %d times, want once:\n%s", n, logBuf.String())
	}
	fw.err = nil
	res, _ = scan(AllStates)
	if res[0].Source != SourceWalk {
		t.Errorf("after the walk recovered: %+v", res[0])
	}

	// A walk that fails after delivering: the walked namespaces carry the
	// error, and are not dumped on top of what they delivered.
	fw.late = errors.New("late failure")
	res, _ = scan(AllStates)
	for _, r := range res[:2] {
		if r.Source != SourceWalk || !strings.Contains(r.Err, "late failure") {
			t.Errorf("after a late walk failure: %+v", r)
		}
	}
	fw.late = nil

	// A callback error ends its namespace only.
	stop := errors.New("stop")
	for _, r := range s.Scan(context.Background(), AllStates, func(ns *Namespace, sk *Socket) error {
		if ns.Name == "host" {
			return stop
		}
		return nil
	}) {
		if (r.Name == "host") != errors.Is(r.Err, stop) {
			t.Errorf("%s: err %v", r.Name, r.Err)
		}
	}

	if err := s.Close(); err != nil || !fw.closed {
		t.Errorf("Close = %v, walker closed %v", err, fw.closed)
	}
}
