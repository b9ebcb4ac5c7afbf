package exporter

import (
	"strings"
	"time"
)

// Document is the JSON contract of `ghostd scan --json` and GET /api/v1/sessions.
// Fields may be added; none may be renamed or dropped.
type Document struct {
	ScannedAt  time.Time         `json:"scanned_at"`
	Namespaces []NamespaceStatus `json:"namespaces"`
	Sessions   []Session         `json:"sessions"`
}

// NamespaceStatus is one scanned network namespace: what the JSON contract
// says of it, and for the metrics and the page its kind and how long its
// dump took.
type NamespaceStatus struct {
	Netns      string `json:"netns"`
	NetnsInode uint64 `json:"netns_inode"`
	Sockets    int    `json:"sockets"`
	Error      string `json:"error"` // "" when the dump succeeded
	// Source is how its sockets were listed: "sock_diag" (a dump of the
	// namespace) or "bpf_walk" (the one walk of the host's TCP tables).
	Source string `json:"source,omitempty"`

	Kind     string        `json:"-"` // "host", "named" or "process"
	Duration time.Duration `json:"-"` // of its dump

	// Pod and K8sNamespace name the Kubernetes pod whose network namespace
	// this is, as the container runtime reports it (then Netns is
	// "<k8s_namespace>/<pod>").
	Pod          string `json:"pod,omitempty"`
	K8sNamespace string `json:"k8s_namespace,omitempty"`
}

// OK reports whether the namespace's dump succeeded.
func (n *NamespaceStatus) OK() bool { return n.Error == "" }

// Session is one suspect socket (or any socket with `scan --all`).
type Session struct {
	Netns       string   `json:"netns"`
	NetnsInode  uint64   `json:"netns_inode"`
	Family      string   `json:"family"` // "inet" or "inet6"
	State       string   `json:"state"`
	Local       string   `json:"local"`  // net.JoinHostPort form
	Remote      string   `json:"remote"` // net.JoinHostPort form
	Cookie      uint64   `json:"cookie"`
	Inode       uint32   `json:"inode"`
	UID         uint32   `json:"uid"`
	PID         int      `json:"pid"`
	Comm        string   `json:"comm"`
	Unit        string   `json:"unit"`
	IdleSeconds float64  `json:"idle_seconds"`
	Reasons     []string `json:"reasons"`
	Verdict     string   `json:"verdict"`
	ProbesSent  int      `json:"probes_sent"`
	Replies     int      `json:"replies"`
	RTTSeconds  *float64 `json:"rtt_seconds"`
	Ghost       bool     `json:"ghost"`
	Killed      bool     `json:"killed"`

	// Extensions beyond the original contract.
	ProbeMode     string  `json:"probe_mode,omitempty"`    // "in_window" or "blind"
	HostReachable *bool   `json:"host_reachable"`          // host hint for silence; null when not asked, or when the hint cannot tell (host_hint nat or shared)
	ClosedByProbe bool    `json:"closed_by_probe"`         // the peer's RST to a probe closed the local socket
	Container     string  `json:"container,omitempty"`     // container id from the cgroup path
	GhostSeconds  float64 `json:"ghost_seconds,omitempty"` // how long it has been a confirmed ghost
	Unprobeable   string  `json:"unprobeable,omitempty"`   // why the socket cannot be probed: "tcp_md5", "tcp_ao"
	// KernelDeadlineSeconds is when the socket's own kernel would notice a
	// dead peer, in seconds from the document's making; null when it never
	// would, or cannot be told (KernelDeadlineBasis says which).
	KernelDeadlineSeconds *float64 `json:"kernel_deadline_seconds"`
	// KernelDeadlineBasis says what decides it: "keepalive", "user_timeout",
	// "retransmit", "zero_window", "time_wait", "none" (keepalive off and
	// nothing in flight: never) or "unknown".
	KernelDeadlineBasis string `json:"kernel_deadline_basis,omitempty"`
	// KernelDeadlineLowerBound: the kernel notices no earlier (keepalive);
	// otherwise the deadline is an estimate (retransmissions).
	KernelDeadlineLowerBound bool `json:"kernel_deadline_lower_bound,omitempty"`
	// NAT is how the connection is translated in its own namespace ("dnat",
	// "snat", "redirect", or two joined with "+"); its probes' answers were
	// matched on its conntrack reply tuple. Empty when it is not translated.
	NAT string `json:"nat,omitempty"`
	// Uncertain says why the verdict is not confirmed although it looks
	// like a ghost's: "interference" (packets for the 4-tuple that answered
	// none of the probes arrived, as in an attack), "capture_lost" (the
	// capture dropped datagrams), "blind" (a blind probe's RST or ICMP
	// error, which a stateful firewall may have sent for the peer),
	// "nat_unknown" (the namespace's conntrack table could not be read) or
	// "routing" (the namespace routes by ports, protocol or user, which
	// probes cannot follow). Such a verdict is never a ghost and never
	// killed; a later round probes again.
	Uncertain string `json:"uncertain,omitempty"`

	// ContainerName is the owner's container's name, as the container
	// runtime reports it (Container is its id).
	ContainerName string `json:"container_name,omitempty"`
	// Pod and K8sNamespace name the socket's pod, as the container runtime
	// reports it: the pod whose network namespace holds the socket, else
	// (a hostNetwork pod) the owner's.
	Pod          string `json:"pod,omitempty"`
	K8sNamespace string `json:"k8s_namespace,omitempty"`
	// HostHint is what the host hint for silence found: "reachable",
	// "unreachable", "nat" (the connection is NATed in its namespace: its
	// remote address is not the peer's host, no echo sent) or "shared" (the
	// address answered, but it fronts many connections, a NAT or VIP that
	// always answers: no claim about the peer). Empty when not asked.
	HostHint string `json:"host_hint,omitempty"`
	// Guarded: the last probe acknowledged RCV.NXT behind the reset guard
	// (probe.reset_guard), so a RST answering it was dropped before the
	// local socket. False where the guard was not in place for it (off,
	// no CAP_NET_ADMIN, blind, NAT in the namespace, the guard failed).
	Guarded bool `json:"guarded,omitempty"`
}

// VerdictText is the verdict as the page and `ghostd scan` print it: an
// unprobeable socket says why ("unprobed (tcp-md5)"), and so does a verdict
// that could not be confirmed ("silent (uncertain: interference)").
func (s *Session) VerdictText() string {
	switch {
	case s.Unprobeable != "":
		return s.Verdict + " (" + strings.ReplaceAll(s.Unprobeable, "_", "-") + ")"
	case s.Uncertain != "":
		return s.Verdict + " (uncertain: " + strings.ReplaceAll(s.Uncertain, "_", " ") + ")"
	}
	return s.Verdict
}
