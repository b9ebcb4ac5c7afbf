package inventory

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// walk reads /proc/*/fd in ascending pid order, the processes of namespace
// netns first when netns is not 0, until it found every inode of found, and
// records where each was found first. Processes that exit or whose fds are
// unreadable are skipped.
func (o *Owners) walk(netns uint64, found map[uint32]holder) {
	pids, err := listPIDs(o.procRoot)
	if err != nil {
		return
	}
	if netns != 0 {
		var inside, outside []int
		for _, pid := range pids {
			if ino, err := nsInode(o.procRoot + "/" + strconv.Itoa(pid) + "/ns/net"); err == nil && ino == netns {
				inside = append(inside, pid)
			} else {
				outside = append(outside, pid)
			}
		}
		pids = append(inside, outside...)
	}
	left := len(found)
	var buf [64]byte
	for _, pid := range pids {
		d, err := os.Open(o.procRoot + "/" + strconv.Itoa(pid) + "/fd")
		if err != nil {
			continue
		}
		names, _ := d.Readdirnames(-1)
		dfd := int(d.Fd())
		for _, name := range names {
			n, err := unix.Readlinkat(dfd, name, buf[:])
			if err != nil {
				continue
			}
			ino, ok := parseSocketLink(buf[:n])
			if !ok {
				continue
			}
			if h, wanted := found[ino]; !wanted || h.pid != 0 {
				continue
			}
			fd, err := strconv.Atoi(name)
			if err != nil {
				continue
			}
			found[ino] = holder{pid: pid, fd: fd}
			left--
		}
		d.Close()
		if left == 0 {
			break
		}
	}
}

// cgroup2Root returns where the cgroup2 hierarchy is mounted, or "".
func cgroup2Root() string {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var sfs unix.Statfs_t
		if unix.Statfs(p, &sfs) == nil && sfs.Type == unix.CGROUP2_SUPER_MAGIC {
			return p
		}
	}
	return ""
}

// walkCgroups maps the inode of every directory under root (on cgroup2, a
// cgroup's id) to its path relative to root ("/" for root itself).
func walkCgroups(root string) (map[uint64]string, error) {
	paths := make(map[uint64]string)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			return fs.SkipDir // removed or unreadable while walking
		}
		if !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		paths[st.Ino] = rel
		return nil
	})
	return paths, err
}
