package inventory

import (
	"os"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/bpftest"
)

// TestOwnersIteratorMatchesProc resolves the same sockets on the real
// kernel with the BPF iterator and with a walk of /proc, and wants the same
// owners: two child processes, each in a network namespace of its own,
// hold a listener and both ends of a connection; this process (a lower
// pid, outside those namespaces) holds a duplicate of one child's socket.
// Without a namespace hint this process owns the shared socket; with the
// child's namespace as the hint, the child does. A socket nobody holds has
// no owner either way.
func TestOwnersIteratorMatchesProc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (new network namespaces, pidfd_getfd, CAP_BPF)")
	}
	iter := bpftest.Load(t, "UseIterator", func() (*Owners, error) {
		o := NewOwners("/proc")
		return o, o.UseIterator(nil)
	})
	iter.iterMin = 0 // the iterator serves even a handful of one namespace's sockets

	a, b := startHolder(t, true), startHolder(t, true)
	netnsA := holderNetns(t, a.Pid())
	inodesA, inodesB := holderInodes(t, a.Pid()), holderInodes(t, b.Pid())
	if len(inodesA) != 3 || len(inodesB) != 3 {
		t.Fatalf("children hold %d and %d sockets, want 3 each (a listener, both ends)", len(inodesA), len(inodesB))
	}
	shared := dupSocket(t, a.Pid(), inodesA[0])
	nobody := uint32(1<<32 - 2)
	inodes := append(append(append([]uint32{}, inodesA...), inodesB...), nobody)
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	self := Owner{PID: os.Getpid(), Comm: string(comm[:len(comm)-1])}
	self.Unit, self.Container = ownCgroup(t)

	for _, tt := range []struct {
		name  string
		netns uint64
		want  int // the shared socket's owner
	}{
		{"no hint: the lowest pid", 0, min(os.Getpid(), a.Pid())},
		{"hint: the holder inside", netnsA, a.Pid()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proc := NewOwners("/proc")
			fromProc := lookup(proc, tt.netns, inodes)
			passes := iter.passes
			fromIter := lookup(iter, tt.netns, inodes)
			if iter.passes != passes+1 {
				t.Fatalf("the iterator did not serve the lookup (%d passes, want %d)", iter.passes, passes+1)
			}
			if diff := cmp.Diff(fromProc, fromIter); diff != "" {
				t.Errorf("owners (-/proc +iterator):\n%s", diff)
			}
			if len(fromIter) != len(inodes)-1 {
				t.Errorf("%d owners found, want %d (every socket but %d)", len(fromIter), len(inodes)-1, nobody)
			}
			if got := fromIter[shared].PID; got != tt.want {
				t.Errorf("shared socket %d owned by pid %d, want %d", shared, got, tt.want)
			}
			for _, ino := range inodesA[1:] {
				if got := fromIter[ino].PID; got != a.Pid() {
					t.Errorf("socket %d owned by pid %d, want %d", ino, got, a.Pid())
				}
			}
			for _, ino := range inodesB {
				if got := fromIter[ino].PID; got != b.Pid() {
					t.Errorf("socket %d owned by pid %d, want %d", ino, got, b.Pid())
				}
			}
			if tt.want == self.PID && fromIter[shared] != self {
				t.Errorf("shared socket's owner = %+v, want %+v", fromIter[shared], self)
			}
		})
	}
}

// holderNetns returns the inode of pid's network namespace.
func holderNetns(t *testing.T, pid int) uint64 {
	t.Helper()
	ino, err := nsInode("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

// holderInodes returns the inodes of the TCP sockets of pid's namespace, in
// dump order.
func holderInodes(t *testing.T, pid int) []uint32 {
	t.Helper()
	c, err := dialIn(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var inodes []uint32
	if _, err := c.Dump(0, AllStates, func(s *Socket) error {
		if s.Inode != 0 {
			inodes = append(inodes, s.Inode)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return inodes
}

// dupSocket copies pid's fd of socket ino into this process (pidfd_getfd)
// until the test ends, and returns ino.
func dupSocket(t *testing.T, pid int, ino uint32) uint32 {
	t.Helper()
	fd := -1
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if target, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + e.Name()); target == "socket:["+strconv.FormatUint(uint64(ino), 10)+"]" {
			fd, _ = strconv.Atoi(e.Name())
		}
	}
	if fd < 0 {
		t.Fatalf("pid %d holds no fd of socket %d", pid, ino)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		t.Fatalf("pidfd_getfd: %v", err)
	}
	t.Cleanup(func() { unix.Close(dup) })
	return ino
}

// ownCgroup returns this process's unit and container as Owners reads them.
func ownCgroup(t *testing.T) (unit, container string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	return ParseCgroup(b)
}
