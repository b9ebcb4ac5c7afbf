package inventory

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// dialNamespace opens a sock_diag connection inside ns. The caller's own
// namespace needs no setns (and so no privilege); any other is entered
// through an fd on ns.Path whose inode is checked first, so a path reused by a
// newer namespace is never entered by mistake. The fd is closed on return:
// only the netlink socket keeps the namespace referenced.
func dialNamespace(ns *Namespace) (nsConn, error) {
	if self, err := nsInode("/proc/thread-self/ns/net"); err == nil && self == ns.Inode {
		c, err := Dial(0)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if os.IsNotExist(err) || err == unix.ESRCH {
			return nil, fmt.Errorf("%s: %w", ns.Path, ErrNamespaceGone)
		}
		return nil, &os.PathError{Op: "open", Path: ns.Path, Err: err}
	}
	defer unix.Close(fd)
	ino, err := fdInode(fd)
	if err != nil {
		return nil, err
	}
	if ino != ns.Inode {
		return nil, fmt.Errorf("%s now holds netns inode %d: %w", ns.Path, ino, ErrNamespaceGone)
	}
	c, err := Dial(fd)
	if err != nil {
		return nil, err
	}
	return c, nil
}
