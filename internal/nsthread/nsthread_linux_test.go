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
	for name, call := range map[string]func(func() error) error{
		`Run("")`:     func(fn func() error) error { return Run("", fn) },
		"EnterFD(-1)": func(fn func() error) error { return EnterFD(-1, fn) },
	} {
		var got uint64
		if err := call(func() (err error) { got, err = netnsInode(); return err }); err != nil {
			t.Fatal(err)
		}
		if got != own {
			t.Errorf("%s: fn ran in netns inode %d, want the caller's %d", name, got, own)
		}
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

// TestEnter: fn runs in the namespace at the path, the caller's thread
// stays put, and fn's error or why the thread could not enter comes back
// (then fn is not called). TestRunEmptyNameStays covers EnterFD(-1).
func TestEnter(t *testing.T) {
	ns := testnet.NewNS(t, "nst") // skips when not root
	var got uint64
	if err := Enter(ns.Path, func() (err error) { got, err = netnsInode(); return err }); err != nil || got != ns.Inode {
		t.Errorf("Enter(%s): fn ran in netns inode %d, %v; want %d", ns.Path, got, err, ns.Inode)
	}
	if now, err := netnsInode(); err != nil || now == ns.Inode {
		t.Errorf("the caller's thread is in netns inode %d (%v), %s's", now, err, ns.Name)
	}
	want := errors.New("from fn")
	if err := Enter(ns.Path, func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Enter = %v, want fn's error", err)
	}
	called := false
	if err := Enter(ns.Path+"-missing", func() error { called = true; return nil }); !errors.Is(err, os.ErrNotExist) || called {
		t.Errorf("Enter of a missing path = %v (fn called %t), want ErrNotExist and no call", err, called)
	}
	f, err := os.Open("/proc/self/status") // not a namespace: setns refuses it
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := EnterFD(int(f.Fd()), func() error { called = true; return nil }); !errors.Is(err, unix.EINVAL) || called {
		t.Errorf("EnterFD of a plain file = %v (fn called %t), want EINVAL and no call", err, called)
	}
}
