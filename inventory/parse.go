package inventory

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// ErrMalformed is wrapped by every error about netlink data that is truncated
// or whose lengths do not add up.
var ErrMalformed = errors.New("inventory: malformed netlink message")

// Netlink and sock_diag constants (include/uapi/linux/netlink.h, sock_diag.h,
// inet_diag.h). They are spelled out here so that the parser stays pure and
// builds on every GOOS.
const (
	nlmsgHdrLen = 16
	nlmsgNoop   = 1
	nlmsgError  = 2
	nlmsgDone   = 3
	// nlmsgOverrun is never sent for sock_diag; it is skipped like NOOP.
	nlmsgOverrun = 4

	tcpdiagGetSock   = 18 // TCPDIAG_GETSOCK: the original inet_diag request, TCP only
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	sockDestroy      = 21 // SOCK_DESTROY

	diagMsgLen   = 72 // sizeof(struct inet_diag_msg)
	diagReqLen   = 56 // sizeof(struct inet_diag_req_v2)
	compatReqLen = 60 // sizeof(struct inet_diag_req)
	nlaHdrLen    = 4
	nlaTypeMask  = 0x3fff // strips NLA_F_NESTED and NLA_F_NET_BYTEORDER

	attrInfo = 2 // INET_DIAG_INFO: struct tcp_info

	// extInfo asks for INET_DIAG_INFO in idiag_ext (bit INET_DIAG_INFO-1).
	extInfo = 1 << (attrInfo - 1)

	ipprotoTCP = 6
)

// Offsets inside struct inet_diag_msg.
const (
	offFamily  = 0
	offState   = 1
	offTimer   = 2
	offRetrans = 3
	offSport   = 4  // be16
	offDport   = 6  // be16
	offSrc     = 8  // 16 bytes, network order
	offDst     = 24 // 16 bytes, network order
	offIf      = 40
	offCookie  = 44 // two u32, low word first
	offExpires = 52
	offRQueue  = 56
	offWQueue  = 60
	offUID     = 64
	offInode   = 68
)

// ne is the byte order of the kernel's host-order fields.
var ne = binary.NativeEndian

// bigEndian is true on big-endian machines, where C bitfields fill a byte
// from its high bits.
var bigEndian = ne.Uint16([]byte{0, 1}) == 1

// ParseDump decodes one netlink datagram (possibly several nlmsghdr) of a
// SOCK_DIAG_BY_FAMILY dump (or of a TCPDIAG_GETSOCK one: same messages). For each inet_diag_msg it fills *s (reused; no
// allocation per socket) with netns set and calls fn; an error from fn stops
// the parse and is returned as is. done is true when NLMSG_DONE was seen.
// NLMSG_ERROR returns an error wrapping the unix.Errno. Malformed or
// truncated data returns an error wrapping ErrMalformed, never panics.
func ParseDump(b []byte, netns uint64, s *Socket, fn func(*Socket) error) (done bool, err error) {
	done, _, err = parseDump(b, netns, 0, s, fn)
	if _, ok := err.(*errnoError); ok {
		err = fmt.Errorf("inventory: %w", err)
	}
	return done, err
}

// errnoError is an NLMSG_ERROR (or a failed NLMSG_DONE) from the kernel.
type errnoError struct {
	errno syscall.Errno
	done  bool // the error came in NLMSG_DONE: the dump itself failed
}

func (e *errnoError) Error() string {
	if e.done {
		return "dump failed: " + e.errno.Error()
	}
	return "netlink error: " + e.errno.Error()
}

func (e *errnoError) Unwrap() error { return e.errno }

// parseDump is ParseDump with a sequence filter: when seq is not 0, messages
// with another sequence number (left over from an aborted request) are
// skipped. It also returns the number of sockets passed to fn.
func parseDump(b []byte, netns uint64, seq uint32, s *Socket, fn func(*Socket) error) (done bool, n int, err error) {
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return false, n, fmt.Errorf("%w: %d trailing bytes, shorter than a header", ErrMalformed, len(b))
		}
		l := ne.Uint32(b[0:4])
		typ := ne.Uint16(b[4:6])
		mseq := ne.Uint32(b[8:12])
		if l < nlmsgHdrLen || uint64(l) > uint64(len(b)) {
			return false, n, fmt.Errorf("%w: nlmsg_len %d with %d bytes left", ErrMalformed, l, len(b))
		}
		body := b[nlmsgHdrLen:l]
		next := min(align4(int(l)), len(b))
		b = b[next:]
		if seq != 0 && mseq != seq {
			continue
		}
		switch typ {
		case nlmsgNoop, nlmsgOverrun:
			continue
		case nlmsgDone:
			// The payload, when present, is the dump's final return value.
			if len(body) >= 4 {
				if v := int32(ne.Uint32(body[0:4])); v < 0 {
					return true, n, &errnoError{errno: syscall.Errno(-v), done: true}
				}
			}
			return true, n, nil
		case nlmsgError:
			if len(body) < 4 {
				return false, n, fmt.Errorf("%w: NLMSG_ERROR of %d bytes", ErrMalformed, len(body))
			}
			v := int32(ne.Uint32(body[0:4]))
			if v == 0 {
				return true, n, nil // an ACK ends a request sent with NLM_F_ACK
			}
			if v < 0 {
				v = -v
			}
			return true, n, &errnoError{errno: syscall.Errno(v)}
		case sockDiagByFamily, tcpdiagGetSock:
			if err := decodeDiagMsg(body, netns, s); err != nil {
				return false, n, err
			}
			n++
			if err := fn(s); err != nil {
				return false, n, err
			}
		default:
			// Not ours to judge: skip unknown message types.
		}
	}
	return false, n, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

// decodeDiagMsg decodes one inet_diag_msg and its attributes into *s.
func decodeDiagMsg(b []byte, netns uint64, s *Socket) error {
	if len(b) < diagMsgLen {
		return fmt.Errorf("%w: inet_diag_msg of %d bytes, want %d", ErrMalformed, len(b), diagMsgLen)
	}
	*s = Socket{
		Netns:   netns,
		Family:  b[offFamily],
		State:   State(b[offState]),
		Timer:   Timer(b[offTimer]),
		Retrans: b[offRetrans],
		Ifindex: ne.Uint32(b[offIf:]),
		Cookie:  uint64(ne.Uint32(b[offCookie:])) | uint64(ne.Uint32(b[offCookie+4:]))<<32,
		Expires: ne.Uint32(b[offExpires:]),
		RQueue:  ne.Uint32(b[offRQueue:]),
		WQueue:  ne.Uint32(b[offWQueue:]),
		UID:     ne.Uint32(b[offUID:]),
		Inode:   ne.Uint32(b[offInode:]),
	}
	sport := binary.BigEndian.Uint16(b[offSport:])
	dport := binary.BigEndian.Uint16(b[offDport:])
	switch s.Family {
	case FamilyInet:
		s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[offSrc:offSrc+4])), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[offDst:offDst+4])), dport)
	case FamilyInet6:
		s.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[offSrc:offSrc+16])), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[offDst:offDst+16])), dport)
	default:
		return fmt.Errorf("%w: inet_diag_msg family %d", ErrMalformed, s.Family)
	}

	for a := b[diagMsgLen:]; len(a) > 0; {
		if len(a) < nlaHdrLen {
			return fmt.Errorf("%w: %d trailing attribute bytes", ErrMalformed, len(a))
		}
		l := int(ne.Uint16(a[0:2]))
		typ := ne.Uint16(a[2:4]) & nlaTypeMask
		if l < nlaHdrLen || l > len(a) {
			return fmt.Errorf("%w: attribute %d: nla_len %d with %d bytes left", ErrMalformed, typ, l, len(a))
		}
		v := a[nlaHdrLen:l]
		a = a[min(align4(l), len(a)):]
		if typ == attrInfo { // the others (INET_DIAG_CGROUP_ID, ...) are not used
			decodeTCPInfo(v, &s.Info)
		}
	}
	return nil
}

// Offsets in struct tcp_info (include/uapi/linux/tcp.h) of the fields that
// every kernel ghostd supports has.
const (
	tiState        = 0
	tiCAState      = 1
	tiRetransmits  = 2
	tiProbes       = 3
	tiBackoff      = 4
	tiOptions      = 5
	tiWScale       = 6 // snd_wscale:4, rcv_wscale:4
	tiRTO          = 8
	tiSndMSS       = 16
	tiRcvMSS       = 20
	tiUnacked      = 24
	tiLost         = 32
	tiRetrans      = 36
	tiLastDataSent = 44
	tiLastAckSent  = 48
	tiLastDataRecv = 52
	tiLastAckRecv  = 56
	tiRTT          = 68
	tiRTTVar       = 72
	tiSndCwnd      = 80
	tiTotalRetrans = 100
)

// decodeTCPInfo decodes struct tcp_info by its length. A payload shorter than
// MinInfoLen leaves *i zero (absent); fields past the payload stay zero and
// their accessors report them absent.
func decodeTCPInfo(b []byte, i *TCPInfo) {
	*i = TCPInfo{}
	if len(b) < MinInfoLen {
		return
	}
	b = b[:min(len(b), 0xffff)]
	i.Len = uint16(len(b))
	i.State = b[tiState]
	i.CAState = b[tiCAState]
	i.Retransmits = b[tiRetransmits]
	i.Probes = b[tiProbes]
	i.Backoff = b[tiBackoff]
	i.Options = b[tiOptions]
	if bigEndian {
		i.SndWScale, i.RcvWScale = b[tiWScale]>>4, b[tiWScale]&0xf
	} else {
		i.SndWScale, i.RcvWScale = b[tiWScale]&0xf, b[tiWScale]>>4
	}
	i.RTO = ne.Uint32(b[tiRTO:])
	i.SndMSS = ne.Uint32(b[tiSndMSS:])
	i.RcvMSS = ne.Uint32(b[tiRcvMSS:])
	i.Unacked = ne.Uint32(b[tiUnacked:])
	i.Lost = ne.Uint32(b[tiLost:])
	i.Retrans = ne.Uint32(b[tiRetrans:])
	i.LastDataSent = ne.Uint32(b[tiLastDataSent:])
	i.LastAckSent = ne.Uint32(b[tiLastAckSent:])
	i.LastDataRecv = ne.Uint32(b[tiLastDataRecv:])
	i.LastAckRecv = ne.Uint32(b[tiLastAckRecv:])
	i.RTT = ne.Uint32(b[tiRTT:])
	i.RTTVar = ne.Uint32(b[tiRTTVar:])
	i.SndCwnd = ne.Uint32(b[tiSndCwnd:])
	i.TotalRetrans = ne.Uint32(b[tiTotalRetrans:])

	var acked, received uint64
	var sndWnd, rcvWnd uint32
	if i.Has(OffBytesAcked, 8) {
		acked = ne.Uint64(b[OffBytesAcked:])
	}
	if i.Has(OffBytesReceived, 8) {
		received = ne.Uint64(b[OffBytesReceived:])
	}
	if i.Has(OffSndWnd, 4) {
		sndWnd = ne.Uint32(b[OffSndWnd:])
	}
	if i.Has(OffRcvWnd, 4) {
		rcvWnd = ne.Uint32(b[OffRcvWnd:])
	}
	i.SetOptional(acked, received, sndWnd, rcvWnd)
}
