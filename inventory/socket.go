package inventory

import (
	"net/netip"
	"strconv"
)

// State is a TCP state as the kernel numbers it (include/net/tcp_states.h).
type State uint8

// TCP states.
const (
	StateEstablished State = 1
	StateSynSent     State = 2
	StateSynRecv     State = 3
	StateFinWait1    State = 4
	StateFinWait2    State = 5
	StateTimeWait    State = 6
	StateClose       State = 7
	StateCloseWait   State = 8
	StateLastAck     State = 9
	StateListen      State = 10
	StateClosing     State = 11
	StateNewSynRecv  State = 12
)

var stateNames = [...]string{
	StateEstablished: "ESTABLISHED",
	StateSynSent:     "SYN_SENT",
	StateSynRecv:     "SYN_RECV",
	StateFinWait1:    "FIN_WAIT1",
	StateFinWait2:    "FIN_WAIT2",
	StateTimeWait:    "TIME_WAIT",
	StateClose:       "CLOSE",
	StateCloseWait:   "CLOSE_WAIT",
	StateLastAck:     "LAST_ACK",
	StateListen:      "LISTEN",
	StateClosing:     "CLOSING",
	StateNewSynRecv:  "NEW_SYN_RECV",
}

// String returns the state's name as ss prints it, e.g. "ESTABLISHED".
func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return "STATE_" + strconv.Itoa(int(s))
}

// StateMask is a bitmask of states (bit n set = state n wanted), as idiag_states expects.
type StateMask uint32

// AllStates selects every TCP state.
const AllStates StateMask = 0xfff << 1

// Mask returns the mask with only s set.
func (s State) Mask() StateMask { return 1 << s }

// Timer is the idiag_timer value: which TCP timer is pending.
type Timer uint8

// Timers as sock_diag reports them.
const (
	TimerNone       Timer = 0
	TimerRetransmit Timer = 1 // also SYN_RECV
	TimerKeepalive  Timer = 2
	TimerTimeWait   Timer = 3 // also orphaned FIN_WAIT2
	TimerZeroWindow Timer = 4 // zero-window (persist) probe timer
	TimerDelayedAck Timer = 5 // newer kernels
)

// Family values, equal to AF_INET and AF_INET6 on Linux.
const (
	FamilyInet  uint8 = 2
	FamilyInet6 uint8 = 10
)

// Socket is one TCP socket from a sock_diag dump. It holds no pointers, so a
// dump can reuse one Socket value for every entry without allocating.
type Socket struct {
	Netns   uint64 // inode of the network namespace the socket lives in
	Family  uint8  // FamilyInet or FamilyInet6
	State   State
	Timer   Timer
	Retrans uint8  // idiag_retrans: retransmits for TimerRetransmit, probes sent for TimerKeepalive and TimerZeroWindow
	Expires uint32 // idiag_expires: milliseconds until the timer fires
	RQueue  uint32 // idiag_rqueue
	WQueue  uint32 // idiag_wqueue
	UID     uint32
	Inode   uint32 // socket inode; 0 for TIME_WAIT and SYN_RECV
	Cookie  uint64 // socket cookie: with Netns, the socket's identity
	// Ifindex is idiag_if, the device the socket is bound to (0: none);
	// an exact lookup or SOCK_DESTROY must repeat it.
	Ifindex uint32
	Local   netip.AddrPort
	Remote  netip.AddrPort
	Info    TCPInfo // Info.Len == 0 when the kernel sent no tcp_info
}

// Key is a socket's identity: 4-tuples get reused, cookies do not.
type Key struct {
	Netns  uint64
	Cookie uint64
}

// Key returns the socket's identity.
func (s *Socket) Key() Key { return Key{Netns: s.Netns, Cookie: s.Cookie} }

// Mapped reports whether the socket is an IPv6 socket talking to an IPv4 peer
// through a v4-mapped address (::ffff:a.b.c.d); such sockets are probed over IPv4.
func (s *Socket) Mapped() bool {
	return s.Family == FamilyInet6 && s.Remote.Addr().Is4In6()
}

// Offsets in struct tcp_info (include/uapi/linux/tcp.h) of the fields whose
// presence depends on the kernel's struct length.
const (
	OffBytesAcked    = 120 // u64, 4.1+
	OffBytesReceived = 128 // u64, 4.1+
	OffSndWnd        = 228 // u32, 5.4+
	OffRcvWnd        = 232 // u32, 6.2+
	OffTotalRTO      = 240 // u16, 6.7+
	// MinInfoLen is the shortest tcp_info ghostd decodes (everything up to and
	// including total_retrans); shorter payloads are treated as absent.
	MinInfoLen = 104
)

// TCPInfo holds the parts of struct tcp_info that ghostd uses. Len is the
// number of bytes the kernel sent (192 on 4.10 … 248 on 6.7–6.17, 280 on 6.18):
// a field that ends past Len is absent, not zero. Use the accessor methods for
// fields that old kernels lack.
type TCPInfo struct {
	Len          uint16
	State        uint8
	CAState      uint8
	Retransmits  uint8
	Probes       uint8
	Backoff      uint8
	Options      uint8
	SndWScale    uint8 // low nibble of byte 6 on little-endian
	RcvWScale    uint8
	RTO          uint32 // microseconds
	SndMSS       uint32
	RcvMSS       uint32
	Unacked      uint32
	Lost         uint32
	Retrans      uint32
	LastDataSent uint32 // milliseconds ago
	LastAckSent  uint32
	LastDataRecv uint32 // milliseconds ago
	LastAckRecv  uint32 // milliseconds ago
	RTT          uint32 // microseconds
	RTTVar       uint32
	SndCwnd      uint32
	TotalRetrans uint32

	bytesAcked    uint64
	bytesReceived uint64
	sndWnd        uint32
	rcvWnd        uint32
}

// Valid reports whether the kernel sent a tcp_info ghostd can decode.
func (i *TCPInfo) Valid() bool { return int(i.Len) >= MinInfoLen }

// Has reports whether a field that starts at off and is size bytes long lies
// within what the kernel sent.
func (i *TCPInfo) Has(off, size int) bool { return int(i.Len) >= off+size }

// BytesAcked returns tcpi_bytes_acked and whether the kernel has it.
func (i *TCPInfo) BytesAcked() (uint64, bool) { return i.bytesAcked, i.Has(OffBytesAcked, 8) }

// BytesReceived returns tcpi_bytes_received and whether the kernel has it.
func (i *TCPInfo) BytesReceived() (uint64, bool) {
	return i.bytesReceived, i.Has(OffBytesReceived, 8)
}

// SndWnd returns tcpi_snd_wnd (the peer's advertised window) and whether the kernel has it (5.4+).
func (i *TCPInfo) SndWnd() (uint32, bool) { return i.sndWnd, i.Has(OffSndWnd, 4) }

// RcvWnd returns tcpi_rcv_wnd and whether the kernel has it (6.2+).
func (i *TCPInfo) RcvWnd() (uint32, bool) { return i.rcvWnd, i.Has(OffRcvWnd, 4) }

// SetOptional sets the length-dependent fields; the parser and tests use it.
func (i *TCPInfo) SetOptional(bytesAcked, bytesReceived uint64, sndWnd, rcvWnd uint32) {
	i.bytesAcked, i.bytesReceived, i.sndWnd, i.rcvWnd = bytesAcked, bytesReceived, sndWnd, rcvWnd
}

// Namespace is a network namespace ghostd scans.
type Namespace struct {
	Inode uint64 // nsfs inode: the namespace's identity
	// Name is what users see: "host", the /run/netns name, or a name derived
	// from the holding process (container id, else "pid-COMM-PID").
	Name string
	// Path opens the namespace: /proc/self/ns/net style paths or /run/netns/NAME.
	Path string
	Kind NamespaceKind
	PID  int // a process that holds it, when Kind is KindProcess
	// PodNamespace and PodName name the Kubernetes pod whose namespace this
	// is, as the container runtime reports it; "" otherwise.
	PodNamespace, PodName string
	// RuntimeNamed says Name came from the container runtime
	// ("<namespace>/<pod>", or a Docker container's name): it replaces a
	// name derived from cgroups or processes (ScannerOptions.Name).
	RuntimeNamed bool
	// TCP holds the namespace's keepalive and retransmission sysctls, as the
	// Scanner last read them (TCP.Read false: the kernel's defaults).
	TCP TCPSysctls
}

// NamespaceKind says how a namespace was found.
type NamespaceKind string

// Namespace kinds.
const (
	KindHost    NamespaceKind = "host"
	KindNamed   NamespaceKind = "named"   // /run/netns
	KindProcess NamespaceKind = "process" // anonymous, held by a process
)
