package bpfowners

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/bpftest"
)

// loadLister loads the iterator, or skips when not root.
func loadLister(t *testing.T) *Lister {
	t.Helper()
	return bpftest.Load(t, "New", New)
}

// ownFDs returns this process's fds one pass reports, by fd.
func ownFDs(t *testing.T, l *Lister) map[int]FD {
	t.Helper()
	got := map[int]FD{}
	if err := l.Each(context.Background(), func(f FD) bool {
		if f.PID == os.Getpid() {
			got[f.FD] = f
		}
		return true
	}); err != nil {
		t.Fatalf("Each: %v", err)
	}
	return got
}

// fdOf returns the fd and inode of a socket or file.
func fdOf(t *testing.T, sc syscall.Conn) (int, uint64) {
	t.Helper()
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(f uintptr) { fd = int(f); serr = unix.Fstat(fd, &st) }); err != nil || serr != nil {
		t.Fatalf("fstat: %v %v", err, serr)
	}
	return fd, st.Ino
}

// TestEachReportsSocketFds: a pass reports every socket this process holds
// (TCP over IPv4 and IPv6, UDP, a unix socket) with its fd, its inode as
// fstat gives it and this process's network namespace, no pipe, and no
// socket once it is closed.
func TestEachReportsSocketFds(t *testing.T) {
	l := loadLister(t)
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	netns := st.Ino
	ln4, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln4.Close()
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	ux, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "", Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ux.Close()
	sockets := []syscall.Conn{ln4, udp, ux}
	if ln6, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback}); err == nil {
		defer ln6.Close()
		sockets = append(sockets, ln6)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()

	got := ownFDs(t, l)
	for _, sc := range sockets {
		fd, ino := fdOf(t, sc)
		want := FD{PID: os.Getpid(), FD: fd, Inode: ino, Netns: netns}
		if got[fd] != want {
			t.Errorf("fd %d: got %+v, want %+v", fd, got[fd], want)
		}
	}
	for _, f := range []*os.File{pr, pw} {
		if r, ok := got[int(f.Fd())]; ok {
			t.Errorf("pipe fd %d reported: %+v", f.Fd(), r)
		}
	}
	udpFD, _ := fdOf(t, udp)
	udp.Close()
	if r, ok := ownFDs(t, l)[udpFD]; ok {
		t.Errorf("closed fd %d still reported: %+v", udpFD, r)
	}
}

// TestEachAfterClose fails with os.ErrClosed, and Close is idempotent.
func TestEachAfterClose(t *testing.T) {
	l := loadLister(t)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Each(context.Background(), func(FD) bool { return true }); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Each after Close = %v, want os.ErrClosed", err)
	}
}

// TestEachCanceled stops before reading when the context is done.
func TestEachCanceled(t *testing.T) {
	l := loadLister(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := 0
	if err := l.Each(ctx, func(FD) bool { n++; return true }); !errors.Is(err, context.Canceled) || n != 0 {
		t.Errorf("Each(canceled) = %v after %d records, want context.Canceled after none", err, n)
	}
}

// TestEachStops: once fn returns false it is not called again, and a pass
// stopped early leaves the lister ready for the next one.
func TestEachStops(t *testing.T) {
	l := loadLister(t)
	for range 3 {
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	for pass := range 2 {
		calls := 0
		if err := l.Each(context.Background(), func(FD) bool {
			calls++
			return calls < 2
		}); err != nil {
			t.Fatalf("pass %d: Each: %v", pass, err)
		}
		if calls != 2 {
			t.Fatalf("pass %d: fn called %d times after asking to stop at the second, want 2", pass, calls)
		}
	}
	if got := ownFDs(t, l); len(got) < 3 {
		t.Errorf("a whole pass after the stopped ones found %d of this process's sockets, want at least 3", len(got))
	}
}
