package probe

import (
	"errors"
	"io"
	"net/netip"
)

// rawConn is one network namespace's probe sockets: a send path for whole IP
// datagrams and a capture of possible replies, each starting at the IP header.
// openRawConn(nsPath, ports) opens one; ports are the probed local ports.
type rawConn interface {
	send(pkt []byte, dst netip.Addr, rt route) error
	// recv blocks until a captured datagram arrives or the conn is closed.
	recv(buf []byte) (int, error)
	io.Closer
}

// route is how a probe leaves, so that it follows the probed socket's own
// segments: the socket's SO_MARK (policy routing), the interface it is bound
// to (SO_BINDTODEVICE, a VRF) and its TOS / traffic class (routing by TOS,
// and the value written into the probe's header). The zero route is the
// namespace's plain routing.
type route struct {
	mark    uint32
	ifindex int
	tos     uint8
}

// routeOf returns the route of the socket whose state st is; nil (blind) is
// the plain route.
func routeOf(st *SeqState, v4 bool) route {
	if st == nil {
		return route{}
	}
	rt := route{mark: st.Mark, ifindex: st.BoundIf, tos: st.TClass}
	if v4 {
		rt.tos = st.TOS
	}
	return rt
}

// captureCounter is a rawConn that counts what its capture lost.
type captureCounter interface {
	// captureStats returns and resets the counts: datagrams dropped for
	// want of buffer space, and datagrams refused for a bad checksum.
	captureStats() (drops, badChecksum uint64)
}

var errConnClosed = errors.New("probe: capture closed")
