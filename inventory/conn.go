package inventory

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
)

// ErrDestroyUnsupported is wrapped (with the errno) by Destroy when the
// kernel lacks CONFIG_INET_DIAG_DESTROY and answers EOPNOTSUPP.
var ErrDestroyUnsupported = errors.New("inventory: SOCK_DESTROY unsupported by this kernel (CONFIG_INET_DIAG_DESTROY)")

// ErrNotLinux is returned by Dial on systems without netlink sock_diag.
var ErrNotLinux = errors.New("inventory: sock_diag needs Linux")

// recvBufLen is the size of the one receive buffer a Conn reuses. The kernel
// sizes dump datagrams after the largest buffer a reader has offered, capped
// at 32 KiB, so this gets the fewest receive calls.
const recvBufLen = 32 << 10

// defaultTimeout bounds one request: a dump that has not finished by then
// fails instead of hanging the scan.
const defaultTimeout = 30 * time.Second

// maxDrain bounds how many stale datagrams a Conn throws away before a new
// request, after an aborted dump (about 32 KiB each).
const maxDrain = 1 << 16

// Conn is one sock_diag netlink socket in one network namespace, reused
// across scans. Its methods serialise on a mutex; a Conn is meant to be used
// by one scanner at a time.
type Conn struct {
	mu  sync.Mutex
	t   transport
	buf []byte
	seq uint32
	// stale is the sequence number of a request whose replies may still be
	// queued (a dump aborted by its callback, a parse error or ENOBUFS): the
	// next request drains them first, since the kernel refuses a new dump
	// (EBUSY) while one is running.
	stale uint32
	// noCompat is set once the kernel refused a TCPDIAG_GETSOCK dump.
	noCompat bool
	s        Socket // scratch for decoding
	timeout  time.Duration
}

// transport is the socket under a Conn: the live one reads raw datagrams
// through the netlink socket's syscall.RawConn, tests script a fake kernel.
type transport interface {
	// send sends one request.
	send(m netlink.Message) error
	// recv reads one datagram into b and returns its full length, which
	// exceeds len(b) when the datagram was truncated. With wait false it
	// returns EAGAIN instead of blocking.
	recv(b []byte, wait bool, deadline time.Time) (int, error)
	close() error
}

func newConn(t transport) *Conn {
	return &Conn{
		t:       t,
		buf:     make([]byte, recvBufLen),
		seq:     uint32(time.Now().UnixNano()) | 1,
		timeout: defaultTimeout,
	}
}

// Close closes the netlink socket.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t.close()
}

func familyName(f uint8) string {
	switch f {
	case FamilyInet:
		return "inet"
	case FamilyInet6:
		return "inet6"
	}
	return fmt.Sprintf("family %d", f)
}

// Dump lists the TCP sockets in the given states of both families,
// calling fn for each with a *Socket that is reused for the next one (copy
// it to keep it). netns is stored in every Socket. It returns the number of
// sockets seen. An error from fn stops the dump and is returned wrapped.
//
// The kernel walks the whole TCP hash for each dump request, and namespaces
// created without net.ipv4.tcp_child_ehash_entries share the host's hash, so
// the walk, not the parsing, is what a dump costs. Dump therefore asks once
// for both families with the original inet_diag request (TCPDIAG_GETSOCK,
// which the kernel serves with AF_UNSPEC): one walk instead of two, about
// half the time in a namespace that shares a busy hash. Sockets then come in
// hash order, listeners first, families mixed. If the kernel refuses that
// request, the Conn falls back for good to one SOCK_DIAG_BY_FAMILY dump for
// AF_INET and one for AF_INET6, as ss does.
func (c *Conn) Dump(netns uint64, states StateMask, fn func(*Socket) error) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.noCompat {
		var req [compatReqLen]byte
		encodeCompatReq(req[:], extInfo, states)
		n, err := c.dump(netns, tcpdiagGetSock, req[:], fn)
		if err == nil {
			return n, nil
		}
		var ee *errnoError
		if n > 0 || !errors.As(err, &ee) || !compatRefused(ee.errno) {
			return n, fmt.Errorf("inventory: dump: %w", err)
		}
		c.noCompat = true
	}
	total := 0
	for _, fam := range [...]uint8{FamilyInet, FamilyInet6} {
		var req [diagReqLen]byte
		encodeReq(req[:], fam, extInfo, states, nil)
		n, err := c.dump(netns, sockDiagByFamily, req[:], fn)
		total += n
		if err != nil {
			return total, fmt.Errorf("inventory: dump %s: %w", familyName(fam), err)
		}
	}
	return total, nil
}

// compatRefused reports whether errno says the kernel does not serve
// TCPDIAG_GETSOCK dumps (as opposed to a failure of this one dump).
func compatRefused(errno syscall.Errno) bool {
	switch errno {
	case syscall.EINVAL, syscall.ENOENT, syscall.EOPNOTSUPP, syscall.EAFNOSUPPORT, syscall.EPROTONOSUPPORT:
		return true
	}
	return false
}

// dump sends one dump request and parses its replies until NLMSG_DONE.
func (c *Conn) dump(netns uint64, typ netlink.HeaderType, req []byte, fn func(*Socket) error) (int, error) {
	seq, err := c.request(netlink.Request|netlink.Dump, typ, req)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(c.timeout)
	total := 0
	for {
		n, err := c.recv(deadline)
		if err != nil {
			c.stale = seq
			return total, err
		}
		done, k, err := parseDump(c.buf[:n], netns, seq, &c.s, fn)
		total += k
		if err != nil {
			if !done {
				c.stale = seq
			}
			return total, err
		}
		if done {
			return total, nil
		}
	}
}

// Lookup asks the kernel for the one socket with s's family, 4-tuple,
// interface and cookie (no dump). It returns false when the socket is gone
// or the cookie no longer matches.
func (c *Conn) Lookup(netns uint64, s *Socket) (Socket, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var req [diagReqLen]byte
	encodeReq(req[:], s.Family, extInfo, AllStates, s)
	seq, err := c.request(netlink.Request, sockDiagByFamily, req[:])
	if err != nil {
		return Socket{}, false, fmt.Errorf("inventory: lookup %v %v: %w", s.Local, s.Remote, err)
	}
	var found Socket
	var ok bool
	deadline := time.Now().Add(c.timeout)
	for !ok {
		n, err := c.recv(deadline)
		if err == nil {
			_, _, err = parseDump(c.buf[:n], netns, seq, &c.s, func(s *Socket) error {
				found, ok = *s, true
				return nil
			})
		}
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESTALE) {
			return Socket{}, false, nil
		}
		if err != nil {
			c.stale = seq
			return Socket{}, false, fmt.Errorf("inventory: lookup %v %v: %w", s.Local, s.Remote, err)
		}
	}
	return found, true, nil
}

// Destroy aborts the socket with SOCK_DESTROY, naming it exactly (cookie
// included), so a newer connection on the same 4-tuple is never hit. The
// kernel resets the peer and the owner gets ECONNABORTED. Errors wrap the
// unix.Errno: ENOENT when the socket is gone or its cookie does not match,
// EPERM without CAP_NET_ADMIN in the socket's namespace, and EOPNOTSUPP
// (also wrapping ErrDestroyUnsupported) when the kernel lacks the feature.
func (c *Conn) Destroy(s *Socket) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var req [diagReqLen]byte
	encodeReq(req[:], s.Family, 0, AllStates, s)
	seq, err := c.request(netlink.Request|netlink.Acknowledge, sockDestroy, req[:])
	if err == nil {
		deadline := time.Now().Add(c.timeout)
		for done := false; !done && err == nil; {
			var n int
			if n, err = c.recv(deadline); err == nil {
				done, _, err = parseDump(c.buf[:n], s.Netns, seq, &c.s, func(*Socket) error { return nil })
			}
		}
	}
	if err == nil {
		return nil
	}
	var ee *errnoError
	if !errors.As(err, &ee) {
		c.stale = seq
	}
	if errors.Is(err, syscall.EOPNOTSUPP) {
		return fmt.Errorf("inventory: destroy %v %v: %w: %w", s.Local, s.Remote, ErrDestroyUnsupported, err)
	}
	return fmt.Errorf("inventory: destroy %v %v: %w", s.Local, s.Remote, err)
}

// request drains what an aborted request left behind and sends a new one.
func (c *Conn) request(flags netlink.HeaderFlags, typ netlink.HeaderType, data []byte) (uint32, error) {
	if c.stale != 0 {
		c.drain()
	}
	c.seq++
	if c.seq == 0 {
		c.seq = 1
	}
	m := netlink.Message{
		Header: netlink.Header{Type: typ, Flags: flags, Sequence: c.seq},
		Data:   data,
	}
	if err := c.t.send(m); err != nil {
		return 0, err
	}
	return c.seq, nil
}

// drain throws away queued replies of the stale request without blocking.
// The kernel queues the next part of a dump each time one is read, so the
// queue only runs dry when the dump is over.
func (c *Conn) drain() {
	seq := c.stale
	c.stale = 0
	for range maxDrain {
		n, err := c.t.recv(c.buf, false, time.Time{})
		if err != nil || n > len(c.buf) {
			return // EAGAIN: nothing left
		}
		done, _, err := parseDump(c.buf[:n], 0, seq, &c.s, func(*Socket) error { return nil })
		if done || errors.Is(err, ErrMalformed) {
			return
		}
	}
}

func (c *Conn) recv(deadline time.Time) (int, error) {
	n, err := c.t.recv(c.buf, true, deadline)
	if err != nil {
		return 0, err
	}
	if n > len(c.buf) {
		return 0, fmt.Errorf("%w: datagram of %d bytes truncated to %d", ErrMalformed, n, len(c.buf))
	}
	return n, nil
}

// encodeReq writes a struct inet_diag_req_v2 for TCP. With id nil it is a
// dump request (wildcard id, no cookie check); otherwise it names id's socket.
func encodeReq(b []byte, family, ext uint8, states StateMask, id *Socket) {
	clear(b[:diagReqLen])
	b[0] = family
	b[1] = ipprotoTCP
	b[2] = ext
	ne.PutUint32(b[4:8], uint32(states))
	const o = 8 // struct inet_diag_sockid
	if id == nil {
		ne.PutUint32(b[o+40:], ^uint32(0)) // INET_DIAG_NOCOOKIE
		ne.PutUint32(b[o+44:], ^uint32(0))
		return
	}
	binary.BigEndian.PutUint16(b[o:], id.Local.Port())
	binary.BigEndian.PutUint16(b[o+2:], id.Remote.Port())
	putAddr(b[o+4:o+20], id.Family, id.Local)
	putAddr(b[o+20:o+36], id.Family, id.Remote)
	ne.PutUint32(b[o+36:], id.Ifindex)
	ne.PutUint32(b[o+40:], uint32(id.Cookie))
	ne.PutUint32(b[o+44:], uint32(id.Cookie>>32))
}

// encodeCompatReq writes the original struct inet_diag_req for a
// TCPDIAG_GETSOCK dump of both families: a wildcard id, no cookie check.
func encodeCompatReq(b []byte, ext uint8, states StateMask) {
	clear(b[:compatReqLen])
	b[0] = FamilyInet // ignored for dumps: the kernel walks AF_UNSPEC
	b[3] = ext
	const o = 4                        // struct inet_diag_sockid
	ne.PutUint32(b[o+40:], ^uint32(0)) // INET_DIAG_NOCOOKIE
	ne.PutUint32(b[o+44:], ^uint32(0))
	ne.PutUint32(b[o+48:], uint32(states))
}

// putAddr writes an address as the kernel expects it in a request: an IPv4
// socket's address in the first 4 bytes, an IPv6 one (v4-mapped included) in
// all 16.
func putAddr(b []byte, family uint8, ap netip.AddrPort) {
	a := ap.Addr()
	if family == FamilyInet && a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}
