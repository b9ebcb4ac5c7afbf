package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/nsthread"
	"github.com/ghostd/ghostd/probe/internal/wire"
)

// linuxConn holds one namespace's probe sockets: IPPROTO_RAW senders (the
// kernel takes our IP header as is: IP_HDRINCL is implied for both families,
// and we compute every checksum) and an AF_PACKET SOCK_DGRAM capture with a
// classic BPF filter, so replies are seen whichever socket they belong to.
type linuxConn struct {
	send4, send6 int // -1 when the family is unavailable in the namespace
	capture      *os.File

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool // set before the capture is closed: its reader's error is then expected

	oob         []byte        // the reader's control-message buffer (one reader)
	badChecksum atomic.Uint64 // captured datagrams refused by VerifyChecksums
}

// captureRcvBuf is the capture socket's receive buffer: bursts of replies
// from many in-flight probes must not overflow it.
const captureRcvBuf = 4 << 20

// openRawConn opens the probe sockets inside the namespace at nsPath ("" =
// ours), capturing replies to the given local ports.
func openRawConn(nsPath string, ports []uint16) (rawConn, error) {
	return nsthread.Open(nsPath, func() (rawConn, error) { return openRawSockets(ports) }, rawConn.Close)
}

func openRawSockets(ports []uint16) (_ rawConn, err error) {
	c := &linuxConn{send4: -1, send6: -1}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	c.send4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("raw IPv4 socket: %w", os.NewSyscallError("socket", err))
	}
	// IPv6 may be disabled in a namespace; IPv4 probes still work then.
	if fd, err6 := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err6 == nil {
		c.send6 = fd
	}
	for _, fd := range []int{c.send4, c.send6} {
		if fd >= 0 {
			// Raw sockets only send here; never queue anything for them.
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 0)
		}
	}

	// Protocol 0 receives nothing until bind, so no unfiltered packet is queued
	// before the filter is attached.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("capture socket: %w", os.NewSyscallError("socket", err))
	}
	c.capture = os.NewFile(uintptr(fd), "probe-capture")
	c.oob = make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.TpacketAuxdata{}))))
	prog, err := wire.ReplyFilter(true, ports)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble capture filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	sc, err := c.capture.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("capture socket: %w", err)
	}
	var serr error
	if err := sc.Control(func(fd uintptr) {
		prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); serr != nil {
			serr = fmt.Errorf("attach capture filter: %w", os.NewSyscallError("setsockopt", serr))
			return
		}
		// PACKET_AUXDATA says whether the kernel checked (or the local stack
		// deferred) a datagram's transport checksum.
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); serr != nil {
			serr = fmt.Errorf("capture auxdata: %w", os.NewSyscallError("setsockopt", serr))
			return
		}
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, captureRcvBuf); err != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, captureRcvBuf)
		}
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL)}
		if serr = unix.Bind(int(fd), sa); serr != nil {
			serr = fmt.Errorf("bind capture socket: %w", os.NewSyscallError("bind", serr))
		}
	}); err != nil {
		return nil, fmt.Errorf("capture socket: %w", err)
	}
	if serr != nil {
		return nil, serr
	}
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *linuxConn) send(pkt []byte, dst netip.Addr, rt route) error {
	var fd int
	var sa unix.Sockaddr
	if dst.Is4() {
		fd, sa = c.send4, &unix.SockaddrInet4{Addr: dst.As4()}
	} else {
		fd, sa = c.send6, &unix.SockaddrInet6{Addr: dst.As16()}
	}
	if fd < 0 {
		return fmt.Errorf("no raw socket for %s: %w", dst, unix.EAFNOSUPPORT)
	}
	oob := routeCmsgs(rt, dst.Is4())
	for {
		var err error
		if len(oob) == 0 {
			err = unix.Sendto(fd, pkt, 0, sa)
		} else {
			_, err = unix.SendmsgN(fd, pkt, oob, sa, 0)
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("sendmsg", err)
		}
		return nil
	}
}

// routeCmsgs returns the control messages that route one probe like its
// socket, or nil for the plain route. Per-message options leave the shared
// raw socket unchanged, so concurrent probes of different sockets never see
// each other's routing:
//   - SO_MARK (needs CAP_NET_RAW or CAP_NET_ADMIN): the mark fwmark rules
//     select a table by. Verified for both families' route lookups on 6.18
//     (probe/probeopts_linux_test.go); older kernels are unverified;
//   - IP_PKTINFO / IPV6_PKTINFO with the interface index: the output
//     interface, as a socket bound with SO_BINDTODEVICE uses;
//   - IP_TOS / IPV6_TCLASS: the route lookup's TOS (our header already
//     carries the value, which the kernel sends as written).
func routeCmsgs(rt route, v4 bool) []byte {
	if rt == (route{}) {
		return nil
	}
	var oob []byte
	add := func(level, typ int, data []byte) {
		start := len(oob)
		oob = append(oob, make([]byte, unix.CmsgSpace(len(data)))...)
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[start]))
		h.Level, h.Type = int32(level), int32(typ)
		h.SetLen(unix.CmsgLen(len(data)))
		copy(oob[start+unix.CmsgLen(0):], data)
	}
	u32 := func(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
	if rt.mark != 0 {
		add(unix.SOL_SOCKET, unix.SO_MARK, u32(rt.mark))
	}
	if v4 {
		if rt.ifindex > 0 {
			info := make([]byte, unix.SizeofInet4Pktinfo)
			binary.NativeEndian.PutUint32(info, uint32(rt.ifindex)) // ipi_ifindex; addresses zero
			add(unix.IPPROTO_IP, unix.IP_PKTINFO, info)
		}
		if rt.tos != 0 {
			add(unix.IPPROTO_IP, unix.IP_TOS, []byte{rt.tos})
		}
		return oob
	}
	if rt.ifindex > 0 {
		info := make([]byte, unix.SizeofInet6Pktinfo)
		binary.NativeEndian.PutUint32(info[16:], uint32(rt.ifindex)) // ipi6_addr :: (any), ipi6_ifindex
		add(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, info)
	}
	if rt.tos != 0 {
		add(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, u32(uint32(rt.tos)))
	}
	return oob
}

// monotonic reads the kernel's CLOCK_MONOTONIC, the clock of Linux's TCP
// timestamps. In a time namespace (CLONE_NEWTIME) ours runs at an offset from
// the kernel's; the offset is taken back out, or probes would carry TSvals
// the peer's PAWS rejects.
func monotonic() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("read CLOCK_MONOTONIC: %w", err)
	}
	off, err := timensOffset()
	if err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()) - off, nil
}

var timensOffset = sync.OnceValues(func() (time.Duration, error) {
	b, err := os.ReadFile("/proc/self/timens_offsets")
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil // a kernel without time namespaces
	}
	if err != nil {
		return 0, fmt.Errorf("time namespace offsets: %w", err)
	}
	return parseTimensOffset(b)
})

// recv returns the next captured datagram whose checksums verify; the
// others are counted and skipped.
func (c *linuxConn) recv(buf []byte) (int, error) {
	for {
		n, trusted, err := c.recvOne(buf)
		if err != nil {
			return 0, err
		}
		if wire.VerifyChecksums(buf[:n], trusted) {
			return n, nil
		}
		c.badChecksum.Add(1)
	}
}

// recvOne reads one datagram and whether the kernel vouches for its
// transport checksum: TP_STATUS_CSUM_VALID (checked) or
// TP_STATUS_CSUMNOTREADY (built by a local stack that leaves the checksum
// to offload, so the field holds only the pseudo-header sum).
func (c *linuxConn) recvOne(buf []byte) (int, bool, error) {
	sc, err := c.capture.SyscallConn()
	if err != nil {
		return 0, false, errConnClosed
	}
	var n, oobn int
	var rerr error
	err = sc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, c.oob, 0)
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	})
	if err != nil {
		// os.File's raw reads report a closed file as internal/poll's
		// "use of closed file", not os.ErrClosed.
		if errors.Is(err, os.ErrClosed) || c.closed.Load() {
			return 0, false, errConnClosed
		}
		return 0, false, err
	}
	if rerr != nil {
		return 0, false, os.NewSyscallError("recvmsg", rerr)
	}
	return n, auxTrusted(c.oob[:oobn]), nil
}

// auxTrusted reads the PACKET_AUXDATA control message, if any.
func auxTrusted(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_PACKET || m.Header.Type != unix.PACKET_AUXDATA || len(m.Data) < 4 {
			continue
		}
		status := binary.NativeEndian.Uint32(m.Data) // tpacket_auxdata.tp_status
		return status&(unix.TP_STATUS_CSUM_VALID|unix.TP_STATUS_CSUMNOTREADY) != 0
	}
	return false
}

// captureStats returns, since the last call, how many datagrams the kernel
// dropped because the capture's buffer was full (PACKET_STATISTICS resets on
// read), and how many recv refused for a bad checksum since the last call.
func (c *linuxConn) captureStats() (drops, badChecksum uint64) {
	badChecksum = c.badChecksum.Swap(0)
	sc, err := c.capture.SyscallConn()
	if err != nil {
		return 0, badChecksum
	}
	_ = sc.Control(func(fd uintptr) {
		if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			drops = uint64(st.Drops)
		}
	})
	return drops, badChecksum
}

func (c *linuxConn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		var errs []error
		for _, fd := range []int{c.send4, c.send6} {
			if fd >= 0 {
				errs = append(errs, unix.Close(fd))
			}
		}
		if c.capture != nil {
			errs = append(errs, c.capture.Close())
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// pinNetns opens the namespace file at nsPath and checks that it is the
// namespace whose inode the inventory saw (want; 0 skips the check). It
// returns a path that names exactly that namespace while the file stays
// open (/proc/self/fd/N), and the function that closes it. A PID reused by
// another process, or a /run/netns name recreated for another namespace
// since the scan, is refused: probes are raw segments with the socket's
// addresses, and must never go into another container's network.
func pinNetns(nsPath string, want uint64) (string, func(), error) {
	if nsPath == "" {
		return "", func() {}, nil
	}
	f, err := os.Open(nsPath)
	if err != nil {
		return "", nil, fmt.Errorf("probe: open netns %s: %w", nsPath, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return "", nil, fmt.Errorf("probe: stat netns %s: %w", nsPath, err)
	}
	if want != 0 && st.Ino != want {
		f.Close()
		return "", nil, fmt.Errorf("%w: %s is now namespace %d, not %d", ErrNetnsChanged, nsPath, st.Ino, want)
	}
	return fmt.Sprintf("/proc/self/fd/%d", f.Fd()), func() { f.Close() }, nil
}
