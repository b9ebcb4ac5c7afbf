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

func (pidfdOps) keepalive(pid int, inode uint32, p *Policy) error {
	return withBorrowedSocket(pid, inode, func(fd int) error {
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

func (pidfdOps) shutdownWrite(pid int, inode uint32) error {
	return withBorrowedSocket(pid, inode, func(fd int) error {
		if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
			return fmt.Errorf("kill: shutdown pid %d socket %d: %w", pid, inode, err)
		}
		return nil
	})
}

// withBorrowedSocket finds the fd of socket inode in process pid, borrows a
// duplicate with pidfd_open + pidfd_getfd, checks that it is that very socket,
// runs fn on it and closes the duplicate (the owner's fd stays open).
func withBorrowedSocket(pid int, inode uint32, fn func(fd int) error) error {
	target, err := findSocketFD(pid, inode)
	if err != nil {
		return err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("kill: pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, target, 0)
	if err != nil {
		return fmt.Errorf("kill: pidfd_getfd pid %d fd %d: %w", pid, target, err)
	}
	defer unix.Close(fd)
	// The fd number may have been reused between readlink and getfd; the
	// inode proves which socket we hold.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("kill: fstat borrowed fd: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Ino != uint64(inode) {
		return fmt.Errorf("kill: pid %d fd %d is no longer socket %d: %w", pid, target, inode, unix.ESTALE)
	}
	return fn(fd)
}

// findSocketFD returns the number of an fd of process pid that refers to
// socket inode, from the /proc/PID/fd symlinks ("socket:[INODE]").
func findSocketFD(pid int, inode uint32) (int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	d, err := os.Open(dir)
	if err != nil {
		return 0, fmt.Errorf("kill: %w", err)
	}
	defer d.Close()
	want := "socket:[" + strconv.FormatUint(uint64(inode), 10) + "]"
	for {
		names, err := d.Readdirnames(256)
		for _, n := range names {
			link, lerr := os.Readlink(dir + "/" + n)
			if lerr == nil && link == want {
				fd, perr := strconv.Atoi(n)
				if perr == nil {
					return fd, nil
				}
			}
		}
		if err != nil {
			break
		}
	}
	return 0, fmt.Errorf("kill: socket %d not found in %s: %w", inode, dir, unix.ENOENT)
}
