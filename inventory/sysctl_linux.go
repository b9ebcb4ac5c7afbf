package inventory

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/nsthread"
)

// ReadTCPSysctls reads ns's TCPSysctls. /proc/sys/net shows the namespace
// of the thread that opens a file, so for another namespace the files are
// opened from a fresh, locked thread (never the main one) that has entered
// ns (through an fd on ns.Path whose inode is checked first) and then
// returns to its own namespace; if it cannot return, the thread is never
// unlocked and the runtime discards it.
func ReadTCPSysctls(ns *Namespace) (TCPSysctls, error) {
	if self, err := nsInode("/proc/thread-self/ns/net"); err == nil && self == ns.Inode {
		return readSysctlFiles()
	}
	var s TCPSysctls
	var err error
	nsthread.Locked(func() bool {
		var restored bool
		s, restored, err = readSysctlsIn(ns)
		return restored
	})
	return s, err
}

// readSysctlsIn runs on a locked thread: it enters ns, reads the files and
// goes back. restored is false when the thread may still be in ns.
func readSysctlsIn(ns *Namespace) (s TCPSysctls, restored bool, err error) {
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return s, true, &os.PathError{Op: "open", Path: "/proc/thread-self/ns/net", Err: err}
	}
	defer unix.Close(orig)
	fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if os.IsNotExist(err) || err == unix.ESRCH {
			return s, true, fmt.Errorf("inventory: %s: %w", ns.Path, ErrNamespaceGone)
		}
		return s, true, &os.PathError{Op: "open", Path: ns.Path, Err: err}
	}
	defer unix.Close(fd)
	if ino, err := fdInode(fd); err != nil {
		return s, true, err
	} else if ino != ns.Inode {
		return s, true, fmt.Errorf("inventory: %s now holds netns inode %d: %w", ns.Path, ino, ErrNamespaceGone)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return s, true, fmt.Errorf("inventory: enter netns %s: %w", ns.Name, os.NewSyscallError("setns", err))
	}
	s, err = readSysctlFiles()
	if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr != nil {
		return s, false, err
	}
	return s, true, err
}

// readSysctlFiles reads the files of the calling thread's namespace.
func readSysctlFiles() (TCPSysctls, error) {
	var vals [len(sysctlFiles)][]byte
	for i, name := range sysctlFiles {
		b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
		if err != nil {
			return TCPSysctls{}, fmt.Errorf("inventory: read sysctl: %w", err)
		}
		vals[i] = b
	}
	return parseSysctls(vals)
}
