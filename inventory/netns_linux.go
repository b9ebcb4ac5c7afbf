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
