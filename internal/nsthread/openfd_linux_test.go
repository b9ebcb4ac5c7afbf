package nsthread_test

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/nsthread"
	"github.com/ghostd/ghostd/internal/testnet"
)

// TestOpenKeepsTheNamespace: what Open opens inside the namespace of an fd
// was opened there, as with OpenAt and a path.
func TestOpenKeepsTheNamespace(t *testing.T) {
	ns := testnet.NewNS(t, "nsf") // skips when not root
	fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	f, err := nsthread.Open(fd, func() (*os.File, error) { return os.Open("/proc/thread-self/ns/net") })
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	var st unix.Stat_t
	err = unix.Fstat(int(f.Fd()), &st)
	f.Close()
	if err != nil || st.Ino != ns.Inode {
		t.Errorf("Open opened in netns inode %d (%v), want %s's %d", st.Ino, err, ns.Name, ns.Inode)
	}
}
