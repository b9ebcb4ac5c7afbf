package nsthread

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/ghostd/ghostd/internal/testnet"
	"golang.org/x/sys/unix"
)

// netnsInode is the inode of the calling thread's network namespace.
func netnsInode() (uint64, error) {
	var st unix.Stat_t
	err := unix.Stat("/proc/thread-self/ns/net", &st)
	return st.Ino, err
}

func TestRunEntersNamedNamespace(t *testing.T) {
	ns := testnet.NewNS(t, "nst") // skips when not root
	var got uint64
	if err := Run(ns.Name, func() (err error) { got, err = netnsInode(); return err }); err != nil {
		t.Fatal(err)
	}
	if got != ns.Inode {
		t.Errorf("fn ran in netns inode %d, want %s's %d", got, ns.Name, ns.Inode)
	}
	own, err := netnsInode()
	if err != nil {
		t.Fatal(err)
	}
	if own == ns.Inode {
		t.Error("the caller's thread moved into the namespace")
	}
}

// TestRunLeavesMainThread: however many Runs enter a namespace, the main
// thread stays put, so /proc/self/ns/net still shows the process's own.
func TestRunLeavesMainThread(t *testing.T) {
	ns := testnet.NewNS(t, "nst") // skips when not root
	var before unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &before); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if err := Run(ns.Name, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var after unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &after); err != nil {
		t.Fatal(err)
	}
	if after.Ino != before.Ino {
		t.Errorf("/proc/self/ns/net is inode %d after the Runs, was %d (%s is %d)", after.Ino, before.Ino, ns.Name, ns.Inode)
	}
}

func TestRunEmptyNameStays(t *testing.T) {
	// The thread group leader may be the thread an earlier Run left in a
	// namespace, so /proc/self is not the reference: this thread is.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own, err := netnsInode()
	if err != nil {
		t.Fatal(err)
	}
	var got uint64
	if err := Run("", func() (err error) { got, err = netnsInode(); return err }); err != nil {
		t.Fatal(err)
	}
	if got != own {
		t.Errorf("fn ran in netns inode %d, want the caller's %d", got, own)
	}
}

func TestRunErrors(t *testing.T) {
	called := false
	err := Run("gd-nst-no-such-namespace", func() error { called = true; return nil })
	if !errors.Is(err, os.ErrNotExist) || called {
		t.Errorf("Run in a missing namespace = %v (fn called %t), want ErrNotExist and no call", err, called)
	}
	want := errors.New("from fn")
	if err := Run("", func() error { return want }); err != want {
		t.Errorf("Run = %v, want fn's error", err)
	}
}

// TestLockedNeverMainThread: fn has returned when Locked does, and never ran
// on the main thread, even when Locked is called from it.
func TestLockedNeverMainThread(t *testing.T) {
	calls := 0
	onMain := false
	check := func() bool {
		calls++
		onMain = onMain || unix.Gettid() == unix.Getpid()
		return true
	}
	for range 50 {
		Locked(check)
	}
	// And from a caller that holds its own thread locked.
	runtime.LockOSThread()
	Locked(check)
	runtime.UnlockOSThread()
	if calls != 51 || onMain {
		t.Errorf("fn ran %d times (want 51), on the main thread: %t", calls, onMain)
	}
}
