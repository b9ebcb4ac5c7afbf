package inventory

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/nsthread"
)

// ReadTCPSysctls reads ns's TCPSysctls. /proc/sys/net shows the namespace
// of the thread that opens a file, so for another namespace the files are
// read on a thread nsthread moves into ns (through an fd on ns.Path whose
// inode is checked first) and back.
func ReadTCPSysctls(ns *Namespace) (TCPSysctls, error) {
	if self, err := nsInode("/proc/thread-self/ns/net"); err == nil && self == ns.Inode {
		return readSysctlFiles()
	}
	var s TCPSysctls
	fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if os.IsNotExist(err) || err == unix.ESRCH {
			return s, fmt.Errorf("inventory: %s: %w", ns.Path, ErrNamespaceGone)
		}
		return s, &os.PathError{Op: "open", Path: ns.Path, Err: err}
	}
	defer unix.Close(fd)
	if ino, err := fdInode(fd); err != nil {
		return s, err
	} else if ino != ns.Inode {
		return s, fmt.Errorf("inventory: %s now holds netns inode %d: %w", ns.Path, ino, ErrNamespaceGone)
	}
	var rerr error // readSysctlFiles names its package already
	if err := nsthread.InNetns(fd, func() error { s, rerr = readSysctlFiles(); return nil }); err != nil {
		return s, fmt.Errorf("inventory: netns %s: %w", ns.Name, err)
	}
	return s, rerr
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
