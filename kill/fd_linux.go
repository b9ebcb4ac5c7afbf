package kill

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// pidfdOps borrows the owner's fd with pidfd_getfd(2).
type pidfdOps struct{}

func (pidfdOps) keepalive(pid int, inode uint32, cookie uint64, p *Policy) error {
	return withBorrowedSocket(pid, inode, cookie, func(fd int) error {
		opts := []struct {
			level, opt, val int
			name            string
		}{
			{unix.SOL_TCP, unix.TCP_KEEPIDLE, int(p.Keepalive.Idle / time.Second), "TCP_KEEPIDLE"},
			{unix.SOL_TCP, unix.TCP_KEEPINTVL, int(p.Keepalive.Interval / time.Second), "TCP_KEEPINTVL"},
			{unix.SOL_TCP, unix.TCP_KEEPCNT, p.Keepalive.Count, "TCP_KEEPCNT"},
		}
		if p.UserTimeout > 0 {
			opts = append(opts, struct {
				level, opt, val int
				name            string
			}{unix.SOL_TCP, unix.TCP_USER_TIMEOUT, int(p.UserTimeout.Milliseconds()), "TCP_USER_TIMEOUT"})
		}
		// SO_KEEPALIVE last: the timer starts with the new idle time.
		opts = append(opts, struct {
			level, opt, val int
			name            string
		}{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, "SO_KEEPALIVE"})
		for _, o := range opts {
			if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
				return fmt.Errorf("kill: set %s on pid %d socket %d: %w", o.name, pid, inode, err)
			}
		}
		return nil
	})
}

func (pidfdOps) shutdownWrite(pid int, inode uint32, cookie uint64) error {
	return withBorrowedSocket(pid, inode, cookie, func(fd int) error {
		if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
			return fmt.Errorf("kill: shutdown pid %d socket %d: %w", pid, inode, err)
		}
		return nil
	})
}

// withBorrowedSocket finds the fd of socket inode in process pid, borrows a
// duplicate with pidfd_open + pidfd_getfd, checks that it is that very socket
// (its cookie, as SOCK_DESTROY names a socket), runs fn on it and closes the
// duplicate (the owner's fd stays open). The inode alone is not enough:
// sockfs numbers come from a 32-bit counter shared with pipes and anonymous
// inodes, which wraps, so a long-lived socket can share its number with a
// newer one, even in the same process.
func withBorrowedSocket(pid int, inode uint32, cookie uint64, fn func(fd int) error) error {
	targets, err := findSocketFDs(pid, inode)
	if err != nil {
		return err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("kill: pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	for _, target := range targets {
		fd, err := unix.PidfdGetfd(pidfd, target, 0)
		if err != nil {
			return fmt.Errorf("kill: pidfd_getfd pid %d fd %d: %w", pid, target, err)
		}
		ok, err := isSocket(fd, inode, cookie)
		if err == nil && ok {
			err = fn(fd)
			unix.Close(fd)
			return err
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("kill: pid %d fd %d: %w", pid, target, err)
		}
	}
	// The fd numbers may have been reused between readlink and getfd, or
	// every socket with that number is another one.
	return fmt.Errorf("kill: pid %d holds no socket %d with cookie %d: %w", pid, inode, cookie, unix.ESTALE)
}

// isSocket reports whether fd is socket inode with this cookie.
func isSocket(fd int, inode uint32, cookie uint64) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("fstat borrowed fd: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Ino != uint64(inode) {
		return false, nil
	}
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return false, fmt.Errorf("SO_COOKIE of borrowed fd: %w", err)
	}
	return c == cookie, nil
}

// findSocketFDs returns the numbers of the fds of process pid that refer to
// a socket numbered inode, from the /proc/PID/fd symlinks ("socket:[INODE]").
func findSocketFDs(pid int, inode uint32) ([]int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("kill: %w", err)
	}
	defer d.Close()
	want := "socket:[" + strconv.FormatUint(uint64(inode), 10) + "]"
	var fds []int
	for {
		names, err := d.Readdirnames(256)
		for _, n := range names {
			link, lerr := os.Readlink(dir + "/" + n)
			if lerr == nil && link == want {
				if fd, perr := strconv.Atoi(n); perr == nil {
					fds = append(fds, fd)
				}
			}
		}
		if err != nil {
			break
		}
	}
	if len(fds) == 0 {
		return nil, fmt.Errorf("kill: socket %d not found in %s: %w", inode, dir, unix.ENOENT)
	}
	return fds, nil
}
