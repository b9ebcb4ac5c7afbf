package probe

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/internal/testnet"
)

// TestIterOnUse: NewIterReaderOnUse loads nothing until a pass asks for
// sockets, then reads what NewIterReader's program reads; closed before
// its first pass, it loads nothing at all.
func TestIterOnUse(t *testing.T) {
	eager := iterReader(t) // needs root
	r, err := NewIterReaderOnUse()
	if err != nil {
		t.Fatalf("NewIterReaderOnUse: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	ns := testnet.NewNS(t, "it")
	ln := ns.Listen(t, "tcp4", "127.0.0.1:0")
	c := iterDial(t, ns, ln)
	cookie := iterCookie(t, c.client)
	ctx := context.Background()
	if got, err := r.ReadSeq(ctx, ns.Path, nil); err != nil || len(got) != 0 || r.impl != nil {
		t.Fatalf("a pass for no sockets: %v, %v; loaded %v, want nothing loaded", got, err, r.impl != nil)
	}
	got, err := r.ReadSeq(ctx, ns.Path, []uint64{cookie})
	if err != nil || r.impl == nil {
		t.Fatalf("first pass: %v (loaded %v)", err, r.impl != nil)
	}
	want, err := eager.ReadSeq(ctx, ns.Path, []uint64{cookie})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" || len(got) != 1 {
		t.Errorf("loaded on use vs at once (-eager +on use):\n%s", diff)
	}

	unused, err := NewIterReaderOnUse()
	if err != nil {
		t.Fatal(err)
	}
	if err := unused.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := unused.ReadSeq(ctx, ns.Path, []uint64{cookie}); !errors.Is(err, os.ErrClosed) || unused.impl != nil {
		t.Errorf("ReadSeq after Close: %v (loaded %v), want ErrClosed and nothing loaded", err, unused.impl != nil)
	}
}

// TestIterOnUseLoadFails: a load that fails at the first pass fails that
// pass and every later one with an error that wraps ErrNoSeq and says why,
// in one line: the prober then goes blind and says so.
func TestIterOnUseLoadFails(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(bad, []byte("not BTF"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &IterReader{sem: make(chan struct{}, 1), load: bad, hz: 100}
	for i := range 2 {
		_, err := r.ReadSeq(context.Background(), "", []uint64{1})
		if !errors.Is(err, ErrNoSeq) || !strings.Contains(err.Error(), "read BTF "+bad) || strings.Contains(err.Error(), "\n") {
			t.Errorf("pass %d: error %q: want one line wrapping ErrNoSeq that says read BTF %s", i+1, err, bad)
		}
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
