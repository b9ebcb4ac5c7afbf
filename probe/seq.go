package probe

import (
	"context"
	"errors"
	"time"
)

// SeqState is a socket's sequence-space state read without touching the
// socket, with the options and routing a probe must copy to look like the
// socket's own segments.
type SeqState struct {
	SndUna, SndNxt, RcvNxt uint32
	SndWnd, RcvWnd         uint32
	SndWScale, RcvWScale   uint8
	TSOK                   bool
	TSRecent, TSOffset     uint32
	// USecTS is set when the socket's TSval counts microseconds (Linux
	// 6.7+, a route with `features tcp_usec_ts`); otherwise milliseconds.
	USecTS bool

	// MD5 and AO are set when the socket holds TCP-MD5 (RFC 2385) or TCP-AO
	// (RFC 5925) keys: its peer drops a segment without the signature, so
	// the socket cannot be probed.
	MD5, AO bool

	// Mark is the socket's SO_MARK; BoundIf the interface index it is bound
	// to (SO_BINDTODEVICE, or a VRF), 0 when unbound.
	Mark    uint32
	BoundIf int
	// TOS is the IPv4 TOS byte and TClass the IPv6 traffic class of the
	// socket's segments, ECN bits cleared (a pure ACK is not ECN-capable).
	TOS, TClass uint8
	// FlowLabel is the IPv6 flow label (20 bits) of the socket's segments:
	// its own, or the automatic one the kernel derives from its hash.
	FlowLabel uint32

	// KeepTime and KeepIntvl are the socket's TCP_KEEPIDLE and
	// TCP_KEEPINTVL, KeepProbes its TCP_KEEPCNT; zero means the namespace's
	// net.ipv4.tcp_keepalive_* sysctl applies. UserTimeout is
	// TCP_USER_TIMEOUT; zero means unset.
	KeepTime, KeepIntvl time.Duration
	KeepProbes          int
	UserTimeout         time.Duration
}

// Unprobeable returns why a probe could not be told apart from a forgery
// by the socket's peer ("tcp_md5", "tcp_ao"), or "" when it can be probed.
func (s *SeqState) Unprobeable() string {
	switch {
	case s == nil:
		return ""
	case s.AO:
		return UnprobeableTCPAO
	case s.MD5:
		return UnprobeableTCPMD5
	}
	return ""
}

// Reasons a socket cannot be probed (Result.Unprobeable).
const (
	UnprobeableTCPMD5 = "tcp_md5" // the socket signs its segments with TCP-MD5
	UnprobeableTCPAO  = "tcp_ao"  // the socket signs its segments with TCP-AO
)

// SeqReader reads SeqState for the given cookies inside one network namespace (nsPath "" = the caller's own).
type SeqReader interface {
	ReadSeq(ctx context.Context, nsPath string, cookies []uint64) (map[uint64]SeqState, error)
}

// ErrNoSeq is wrapped by readers that cannot work here (no BTF, no CAP_BPF, old kernel).
var ErrNoSeq = errors.New("probe: sequence numbers unavailable")
