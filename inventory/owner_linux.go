package inventory

import (
	"os"
	"strconv"

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
