//go:build linux

package inventory

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/nsthread"
)

// sockRcvBuf is the netlink socket's receive buffer: room for several 32 KiB
// datagrams, since the kernel only fills a new one while the queue holds
// less than half of it.
const sockRcvBuf = 256 << 10

// Dial opens a sock_diag socket in the namespace nsFD refers to (an open
// /proc/PID/ns/net or /run/netns/NAME), or in the caller's namespace when
// nsFD <= 0. The caller may close nsFD once Dial returns. The socket is
// made on a thread nsthread moves there (netlink.Config.NetNS would move
// any thread, the main one included).
func Dial(nsFD int) (*Conn, error) {
	dial := func() (*netlink.Conn, error) { return netlink.Dial(unix.NETLINK_SOCK_DIAG, nil) }
	var nc *netlink.Conn
	var err error
	if nsFD > 0 {
		nc, err = nsthread.OpenFD(nsFD, dial, (*netlink.Conn).Close)
	} else {
		nc, err = dial()
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: dial sock_diag: %w", err)
	}
	t, err := newRawTransport(nc)
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("inventory: dial sock_diag: %w", err)
	}
	return newConn(t), nil
}

// rawTransport sends with netlink.Conn and receives raw datagrams through its
// syscall.RawConn, so replies land in the Conn's one buffer and are parsed in
// place. The read callback is a method value made once, so a receive does
// not allocate.
type rawTransport struct {
	nc *netlink.Conn
	rc syscall.RawConn

	readFn func(fd uintptr) bool
	b      []byte
	wait   bool
	n      int
	err    error
}

func newRawTransport(nc *netlink.Conn) (*rawTransport, error) {
	if err := nc.SetReadBuffer(sockRcvBuf); err != nil {
		return nil, err
	}
	rc, err := nc.SyscallConn()
	if err != nil {
		return nil, err
	}
	t := &rawTransport{nc: nc, rc: rc}
	t.readFn = t.read
	return t, nil
}

func (t *rawTransport) send(m netlink.Message) error {
	_, err := t.nc.Send(m)
	return err
}

// read is the RawConn.Read callback: true when done, false to wait for the
// poller (EAGAIN on the non-blocking socket). EINTR retries at once.
func (t *rawTransport) read(fd uintptr) bool {
	flags := uintptr(unix.MSG_TRUNC)
	if !t.wait {
		flags |= unix.MSG_DONTWAIT
	}
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd,
			uintptr(unsafe.Pointer(unsafe.SliceData(t.b))), uintptr(len(t.b)), flags, 0, 0)
		switch e {
		case 0:
			t.n, t.err = int(r), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if t.wait {
				return false
			}
		}
		t.n, t.err = 0, os.NewSyscallError("recvfrom", e)
		return true
	}
}

func (t *rawTransport) recv(b []byte, wait bool, deadline time.Time) (int, error) {
	if len(b) == 0 {
		return 0, errors.New("inventory: empty receive buffer")
	}
	// A non-blocking read (draining an aborted dump) clears the deadline:
	// after a timed-out dump the old one has passed, and the poller would
	// refuse to read at all, leaving the kernel's dump running (EBUSY).
	if !wait {
		deadline = time.Time{}
	}
	if err := t.nc.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	t.b, t.wait = b, wait
	if err := t.rc.Read(t.readFn); err != nil {
		return 0, err // deadline exceeded, or the socket was closed
	}
	n, err := t.n, t.err
	t.b, t.err = nil, nil
	return n, err
}

func (t *rawTransport) close() error { return t.nc.Close() }
