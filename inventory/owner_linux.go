package inventory

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// walk reads /proc/*/fd in ascending pid order, the processes of namespace
// netns first when netns is not 0, until every wanted inode is found, and
// returns where each was found first. Processes that exit or whose fds are
// unreadable are skipped.
func (o *Owners) walk(netns uint64, want map[uint32]struct{}) map[uint32]holder {
	found := make(map[uint32]holder, len(want))
	pids, err := listPIDs(o.procRoot)
	if err != nil {
		return found
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
			if _, wanted := want[ino]; !wanted {
				continue
			}
			if _, dup := found[ino]; dup {
				continue
			}
			fd, err := strconv.Atoi(name)
			if err != nil {
				continue
			}
			found[ino] = holder{pid: pid, fd: fd}
		}
		d.Close()
		if len(found) == len(want) {
			break
		}
	}
	return found
}
