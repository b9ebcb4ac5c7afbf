package bpfwalk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/ghostd/ghostd/internal/bpfload"
	"github.com/ghostd/ghostd/internal/bpftest"
	"github.com/ghostd/ghostd/internal/testnet"
	"golang.org/x/sys/unix"
)

// loadWalker loads the walk's variant ("": the best this kernel allows), or
// skips when not root; the walker is closed when the test ends.
func loadWalker(t testing.TB, variant string) *Walker {
	t.Helper()
	return bpftest.Load(t, fmt.Sprintf("load the walk (variant %q)", variant), func() (*Walker, error) { return newWalker(variant) })
}

// walkNetns returns the records of one walk that belong to netns, by cookie.
func walkNetns(t *testing.T, w *Walker, netns uint64) map[uint64]Record {
	t.Helper()
	got := map[uint64]Record{}
	if _, err := w.Walk(context.Background(), []uint64{netns}, func(r *Record) error {
		if uint64(r.Netns) == netns {
			got[r.Cookie] = *r
		}
		return nil
	}); err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return got
}

func addrOf(b [16]byte, family uint8, port uint16) netip.AddrPort {
	if family == unix.AF_INET {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(b), port)
}

// TestWalkListsSocketsOfOtherNamespaces walks from the test's own namespace
// and finds connections, their listener and a TIME_WAIT socket that live
// in a namespace the test created, with the fields the kernel reports for
// them through the sockets themselves.
func TestWalkListsSocketsOfOtherNamespaces(t *testing.T) {
	w := loadWalker(t, "")
	ns := testnet.NewNS(t, "wk")
	ln4 := ns.Listen(t, "tcp", "127.0.0.1:0")
	ln6 := ns.Listen(t, "tcp6", "[::1]:0")
	c4 := ns.Dial(t, "tcp", ln4.Addr().String())
	c6 := ns.Dial(t, "tcp6", ln6.Addr().String())
	if _, err := c4.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	// A connection closed by its client first leaves a TIME_WAIT socket.
	twLocal := ns.TimeWait(t, ns.Listen(t, "tcp", "127.0.0.1:0"))

	got := walkNetns(t, w, ns.Inode)
	for _, c := range []net.Conn{c4, c6} {
		cookie := testnet.Cookie(t, c.(*net.TCPConn))
		r, ok := got[cookie]
		if !ok {
			t.Errorf("%v: cookie %d not listed (netns %d has %d records)", c.LocalAddr(), cookie, ns.Inode, len(got))
			continue
		}
		local := c.LocalAddr().(*net.TCPAddr).AddrPort()
		remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		if got := addrOf(r.Src, r.Family, r.SPort); got.Port() != local.Port() || got.Addr().Unmap() != local.Addr().Unmap() {
			t.Errorf("local %v, want %v", got, local)
		}
		if got := addrOf(r.Dst, r.Family, r.DPort); got.Port() != remote.Port() || got.Addr().Unmap() != remote.Addr().Unmap() {
			t.Errorf("remote %v, want %v", got, remote)
		}
		if r.State != 1 || r.Flags&FlagInfo == 0 || r.Inode == 0 || r.UID != uint32(os.Geteuid()) {
			t.Errorf("%v: state %d flags %#x inode %d uid %d; want ESTABLISHED with info, an inode and uid %d",
				local, r.State, r.Flags, r.Inode, r.UID, os.Geteuid())
		}
	}
	if r := got[testnet.Cookie(t, c4.(*net.TCPConn))]; r.SndNxt-r.SndUna != 0 || r.BytesAcked != 6 {
		// bytes_acked counts the SYN too.
		t.Errorf("c4: snd_nxt-snd_una %d, bytes_acked %d; want 0 and 6 (5 bytes + SYN)", r.SndNxt-r.SndUna, r.BytesAcked)
	}
	var listeners, timeWait int
	for _, r := range got {
		switch {
		case r.State == 10:
			listeners++
		case r.State == 6 && addrOf(r.Src, r.Family, r.SPort) == twLocal:
			timeWait++
			if r.Timer != 3 || r.TimerLeft == 0 {
				t.Errorf("TIME_WAIT: timer %d, %d jiffies left; want 3 and > 0", r.Timer, r.TimerLeft)
			}
		}
	}
	if listeners != 3 || timeWait != 1 {
		t.Errorf("%d listeners and %d TIME_WAIT sockets, want 3 and 1", listeners, timeWait)
	}
}

// TestCovers: a namespace sharing the host's tables is covered; one created
// while tcp_child_ehash_entries was set in its parent has its own tables and
// is not. Its listener still shows up in the walk: a namespace's own tables
// hold its established sockets only, and listeners stay in the host's
// listener table (inet_pernet_hashinfo_alloc), so callers must take such a
// namespace's sockets from sock_diag and ignore its records.
func TestCovers(t *testing.T) {
	w := loadWalker(t, "")
	parent := testnet.NewNS(t, "wkp")
	fd, err := unix.Open(parent.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if ok, err := w.Covers(fd); err != nil || !ok {
		t.Errorf("Covers(shared) = %v, %v; want true", ok, err)
	}
	if ok, err := w.Covers(-1); err != nil || !ok {
		t.Errorf("Covers(own) = %v, %v; want true", ok, err)
	}

	parent.Sysctl(t, "net.ipv4.tcp_child_ehash_entries", "1024")
	var child, lnFD int = -1, -1
	var childIno uint64
	err = parent.Do(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		var err error
		if child, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstat(child, &st); err != nil {
			return err
		}
		childIno = st.Ino
		// A listener on the child's own loopback (down: bind works anyway).
		if lnFD, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.Bind(lnFD, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		return unix.Listen(lnFD, 1)
	})
	if child >= 0 {
		defer unix.Close(child)
	}
	if lnFD >= 0 {
		defer unix.Close(lnFD)
	}
	if err != nil {
		t.Fatalf("make a namespace with its own TCP tables: %v", err)
	}
	if ok, err := w.Covers(child); err != nil || ok {
		t.Errorf("Covers(own tables) = %v, %v; want false", ok, err)
	}
	for _, r := range walkNetns(t, w, childIno) {
		if r.State != 10 {
			t.Errorf("walk listed a socket in state %d of a namespace with its own tables", r.State)
		}
	}
}

func TestWalkAfterClose(t *testing.T) {
	w := loadWalker(t, "")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Walk(context.Background(), nil, func(*Record) error { return nil }); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Walk after Close: %v, want os.ErrClosed", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCopyVariantMatchesCast: the variant for kernels without
// bpf_rdonly_cast reports every socket as the cast variant does (which
// inventory's TestWalkMatchesSockDiag holds against sock_diag).
func TestCopyVariantMatchesCast(t *testing.T) {
	var ws [2]*Walker
	for i, v := range []string{VariantCast, VariantCopy} {
		w := loadWalker(t, v)
		if w.Variant() != v {
			t.Fatalf("Variant() = %q, want %q", w.Variant(), v)
		}
		ws[i] = w
	}
	ns := testnet.NewNS(t, "wkv")
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		network := "tcp"
		if addr[0] == '[' {
			network = "tcp6"
		}
		ln := ns.Listen(t, network, addr)
		c, _ := ns.Connect(t, ln)
		if _, err := c.Write(make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		ns.TimeWait(t, ln)
	}
	cast := walkNetns(t, ws[0], ns.Inode)
	cp := walkNetns(t, ws[1], ns.Inode)
	if len(cast) < 8 {
		t.Fatalf("the cast variant listed %d sockets, want at least 8", len(cast))
	}
	hz := uint32(ws[0].HZ())
	for cookie, a := range cast {
		b, ok := cp[cookie]
		if !ok {
			t.Errorf("cookie %d (state %d) listed by the cast variant only", cookie, a.State)
			continue
		}
		if d := int64(a.TimerLeft) - int64(b.TimerLeft) + int64(b.Now) - int64(a.Now); d < -int64(hz) || d > int64(hz) {
			t.Errorf("cookie %d: timer %d vs %d jiffies left", cookie, a.TimerLeft, b.TimerLeft)
		}
		a.Now, b.Now, a.TimerLeft, b.TimerLeft = 0, 0, 0, 0
		if a != b {
			t.Errorf("cookie %d:\ncast %+v\ncopy %+v", cookie, a, b)
		}
	}
	if len(cp) != len(cast) {
		t.Errorf("copy variant listed %d sockets, cast %d", len(cp), len(cast))
	}
}

// TestWalkResumesAcrossRuns: a namespace with more sockets than one run of
// walk_hash can leave in the ring buffer is walked in several runs, each
// resuming where the last stopped, and every connection is listed once.
func TestWalkResumesAcrossRuns(t *testing.T) {
	w := loadWalker(t, "")
	spec, err := bpfload.Spec("walk.c", walkObject)
	if err != nil {
		t.Fatal(err)
	}
	perRun := int(spec.Maps["records"].MaxEntries) / (RecordLen + 8) // 8: the ring's record header
	ns := testnet.NewNS(t, "wr")
	ln := ns.Listen(t, "tcp", "127.0.0.1:0")
	want := map[uint64]bool{}
	for len(want) < perRun+500 {
		c := ns.Dial(t, "tcp", ln.Addr().String())
		want[testnet.Cookie(t, c.(*net.TCPConn))] = true
	}
	seen := map[uint64]int{}
	if _, err := w.Walk(context.Background(), []uint64{ns.Inode}, func(r *Record) error {
		if uint64(r.Netns) == ns.Inode {
			seen[r.Cookie]++
		}
		return nil
	}); err != nil {
		t.Fatalf("Walk: %v", err)
	}
	// Client ends, their accepted server ends and the listener.
	if len(seen) < 2*len(want)+1 {
		t.Errorf("%d sockets listed, want at least %d (more than the %d one run holds)", len(seen), 2*len(want)+1, perRun)
	}
	for c := range want {
		if seen[c] != 1 {
			t.Errorf("cookie %d listed %d times, want once", c, seen[c])
		}
	}
}
