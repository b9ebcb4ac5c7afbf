package inventory

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/inventory/bpfwalk"
)

// newOneWalker loads bpfwalk from the calling thread's namespace and
// returns it with the check of whether a namespace shares its tables.
func newOneWalker() (oneWalker, func(*Namespace) (bool, error), error) {
	w, err := bpfwalk.New()
	if err != nil {
		return nil, nil, err
	}
	covers := func(ns *Namespace) (bool, error) {
		if self, err := nsInode("/proc/thread-self/ns/net"); err == nil && self == ns.Inode {
			return w.Covers(-1)
		}
		fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return false, fmt.Errorf("inventory: open %s: %w", ns.Path, err)
		}
		defer unix.Close(fd)
		ino, err := fdInode(fd)
		if err != nil {
			return false, err
		}
		if ino != ns.Inode {
			return false, fmt.Errorf("inventory: %s now holds netns inode %d: %w", ns.Path, ino, ErrNamespaceGone)
		}
		return w.Covers(fd)
	}
	return w, covers, nil
}
