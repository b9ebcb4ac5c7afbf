package nsthread_test

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/nsthread"
	"github.com/ghostd/ghostd/internal/testnet"
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
	if err := nsthread.Run(ns.Name, func() (err error) { got, err = netnsInode(); return err }); err != nil {
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
		if err := nsthread.Run(ns.Name, func() error { return nil }); err != nil {
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
		`Run("")`:       func(fn func() error) error { return nsthread.Run("", fn) },
		`InNetnsAt("")`: func(fn func() error) error { return nsthread.InNetnsAt("", fn) },
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
	err := nsthread.Run("gd-nst-no-such-namespace", func() error { called = true; return nil })
	if !errors.Is(err, os.ErrNotExist) || called {
		t.Errorf("Run in a missing namespace = %v (fn called %t), want ErrNotExist and no call", err, called)
	}
	want := errors.New("from fn")
	if err := nsthread.Run("", func() error { return want }); err != want {
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
		nsthread.Locked(check)
	}
	// And from a caller that holds its own thread locked.
	runtime.LockOSThread()
	nsthread.Locked(check)
	runtime.UnlockOSThread()
	if calls != 51 || onMain {
		t.Errorf("fn ran %d times (want 51), on the main thread: %t", calls, onMain)
	}
}

// threadsIn returns how many of this process's threads are in the network
// namespace with inode ino.
func threadsIn(t *testing.T, ino uint64) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		var st unix.Stat_t
		if unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st) == nil && st.Ino == ino {
			n++
		}
	}
	return n
}

// TestInNetns: fn runs inside the namespace of the fd, never on the main
// thread, and every thread is back in its own namespace afterwards (the
// threads are unlocked and reused, so one left behind would show).
func TestInNetns(t *testing.T) {
	ns := testnet.NewNS(t, "nst") // skips when not root
	fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for i := range 50 {
		var got uint64
		enter := func() error { return nsthread.InNetns(fd, func() (err error) { got, err = netnsInode(); return err }) }
		if i%2 == 1 {
			enter = func() error {
				return nsthread.InNetnsAt(ns.Path, func() (err error) { got, err = netnsInode(); return err })
			}
		}
		if err := enter(); err != nil {
			t.Fatal(err)
		}
		if got != ns.Inode {
			t.Fatalf("call %d: fn ran in netns inode %d, want %s's %d", i, got, ns.Name, ns.Inode)
		}
	}
	if n := threadsIn(t, ns.Inode); n != 0 {
		t.Errorf("%d threads still in %s after InNetns returned", n, ns.Name)
	}
}

// TestInNetnsFailures: fn is not called when the namespace cannot be
// entered, its own error comes back as it is, and nsFD < 0 runs it where
// the process's threads are, off the main thread.
func TestInNetnsFailures(t *testing.T) {
	called := false
	fn := func() error { called = true; return nil }
	if err := nsthread.InNetnsAt("/run/netns/gd-nst-no-such-namespace", fn); !errors.Is(err, os.ErrNotExist) || called {
		t.Errorf("InNetnsAt a missing file = %v (fn called %t), want ErrNotExist and no call", err, called)
	}
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(null)
	if err := nsthread.InNetns(null, fn); !errors.Is(err, unix.EINVAL) || called {
		t.Errorf("InNetns on /dev/null = %v (fn called %t), want EINVAL and no call", err, called)
	}
	want := errors.New("from fn")
	if err := nsthread.InNetns(-1, func() error { return want }); err != want {
		t.Errorf("InNetns(-1) = %v, want fn's error as it is", err)
	}
	var own unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &own); err != nil {
		t.Fatal(err)
	}
	var got uint64
	onMain := true
	if err := nsthread.InNetns(-1, func() (err error) {
		onMain = unix.Gettid() == unix.Getpid()
		got, err = netnsInode()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got != own.Ino || onMain {
		t.Errorf("InNetns(-1): fn ran in netns inode %d (the process's is %d), on the main thread: %t", got, own.Ino, onMain)
	}
}

// TestOpenReturnsWhatItOpened: what open makes inside the namespace comes
// back to the caller, still of that namespace.
func TestOpenReturnsWhatItOpened(t *testing.T) {
	ns := testnet.NewNS(t, "nso") // skips when not root
	openNS := func() (*os.File, error) { return os.Open("/proc/thread-self/ns/net") }
	fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for name, open := range map[string]func() (*os.File, error){
		"Open":   func() (*os.File, error) { return nsthread.Open(ns.Path, openNS, (*os.File).Close) },
		"OpenFD": func() (*os.File, error) { return nsthread.OpenFD(fd, openNS, (*os.File).Close) },
	} {
		f, err := open()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(int(f.Fd()), &st)
		f.Close()
		if err != nil || st.Ino != ns.Inode {
			t.Errorf("%s opened netns inode %d (%v), want %s's %d", name, st.Ino, err, ns.Name, ns.Inode)
		}
	}
	if _, err := nsthread.Open("/run/netns/gd-nso-no-such-namespace", openNS, (*os.File).Close); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open in a missing namespace: %v, want ErrNotExist", err)
	}
}
