package realserver

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

var (
	ssLineRE  = regexp.MustCompile(`^\s*\d+\s+\d+\s+(\S+)\s+(\S+)(.*)$`)
	ssUserRE  = regexp.MustCompile(`users:\(\("([^"]*)",pid=(\d+),fd=(\d+)\)`)
	ssInodeRE = regexp.MustCompile(`\bino:(\d+)`)
)

// Sockets lists the ESTABLISHED TCP sockets in ns (ss -tnpe), with an owner.
func Sockets(ns *testnet.NS) ([]Socket, error) {
	out, err := ns.ExecErr("", "ss", "-tnpeH", "state", "established")
	if err != nil {
		return nil, err
	}
	var socks []Socket
	for _, line := range strings.Split(out, "\n") {
		m := ssLineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		l, err1 := parseAddrPort(m[1])
		r, err2 := parseAddrPort(m[2])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("realserver: ss line %q", line)
		}
		sk := Socket{Local: l, Remote: r}
		if u := ssUserRE.FindStringSubmatch(m[3]); u != nil {
			sk.Comm = u[1]
			sk.PID, _ = strconv.Atoi(u[2])
			sk.FD, _ = strconv.Atoi(u[3])
		}
		if i := ssInodeRE.FindStringSubmatch(m[3]); i != nil {
			sk.Inode, _ = strconv.ParseUint(i[1], 10, 64)
		}
		socks = append(socks, sk)
	}
	return socks, nil
}

// ArmKeepalive turns on the kernel's keepalive on the owner's socket with
// the given idle time, interval and count, through a duplicate borrowed with
// pidfd_getfd(2) (the owner's fd is untouched otherwise). The borrowed fd
// must still be the socket's inode.
func ArmKeepalive(sk Socket, idle, interval time.Duration, count int) error {
	if sk.PID == 0 {
		return fmt.Errorf("realserver: %s -> %s has no owner", sk.Local, sk.Remote)
	}
	pidfd, err := unix.PidfdOpen(sk.PID, 0)
	if err != nil {
		return fmt.Errorf("realserver: pidfd_open %d: %w", sk.PID, err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, sk.FD, 0)
	if err != nil {
		return fmt.Errorf("realserver: pidfd_getfd %d/%d: %w", sk.PID, sk.FD, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("realserver: fstat: %w", err)
	}
	if st.Ino != sk.Inode {
		return fmt.Errorf("realserver: pid %d fd %d is inode %d, not %d", sk.PID, sk.FD, st.Ino, sk.Inode)
	}
	for _, o := range []struct{ level, opt, val int }{
		{unix.SOL_TCP, unix.TCP_KEEPIDLE, int(idle / time.Second)},
		{unix.SOL_TCP, unix.TCP_KEEPINTVL, int(interval / time.Second)},
		{unix.SOL_TCP, unix.TCP_KEEPCNT, count},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1}, // last: the timer starts with the new idle time
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
			return fmt.Errorf("realserver: setsockopt %d/%d on pid %d fd %d: %w", o.level, o.opt, sk.PID, sk.FD, err)
		}
	}
	return nil
}
