package inventory

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// nsInode returns the nsfs inode of a network namespace file: a
// /proc/PID/ns/net link ("net:[N]") or a file bind-mounted from one, such as
// /run/netns/NAME. Anything else is an error.
func nsInode(path string) (uint64, error) {
	var buf [64]byte
	n, err := unix.Readlink(path, buf[:])
	if err == nil {
		return parseNsLink(string(buf[:n]))
	}
	if !errors.Is(err, unix.EINVAL) { // EINVAL: not a symlink, e.g. a bind mount
		return 0, &os.PathError{Op: "readlink", Path: path, Err: err}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return 0, fmt.Errorf("inventory: %s is not a namespace file", path)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st.Ino, nil
}

// fdInode returns the inode of an open namespace fd.
func fdInode(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, os.NewSyscallError("fstat", err)
	}
	return st.Ino, nil
}

// ownerUID returns the uid that owns path, and false when it cannot be read.
func ownerUID(path string) (uint32, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, false
	}
	return st.Uid, true
}

// withNamespaceFD calls fn with an fd on ns.Path whose inode is checked to be
// ns's first, so a path reused by a newer namespace is never used by mistake,
// or with fd -1 when ns is the calling thread's own namespace (which needs no
// setns, and so no privilege). The fd is closed when fn returns.
func withNamespaceFD(ns *Namespace, fn func(fd int) error) error {
	if self, err := nsInode("/proc/thread-self/ns/net"); err == nil && self == ns.Inode {
		return fn(-1)
	}
	fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if os.IsNotExist(err) || err == unix.ESRCH {
			return fmt.Errorf("%s: %w", ns.Path, ErrNamespaceGone)
		}
		return &os.PathError{Op: "open", Path: ns.Path, Err: err}
	}
	defer unix.Close(fd)
	ino, err := fdInode(fd)
	if err != nil {
		return err
	}
	if ino != ns.Inode {
		return fmt.Errorf("%s now holds netns inode %d: %w", ns.Path, ino, ErrNamespaceGone)
	}
	return fn(fd)
}

// DialPath opens a sock_diag socket in the namespace whose nsfs file is path
// (/run/netns/NAME or /proc/PID/ns/net), as Dial does with an fd on it.
func DialPath(path string) (*Conn, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("inventory: open %s: %w", path, err)
	}
	defer unix.Close(fd)
	return Dial(fd)
}
