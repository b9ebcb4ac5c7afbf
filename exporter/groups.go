package exporter

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/ghostd/ghostd/events"
)

// GroupBy says how sessions are grouped.
type GroupBy string

// Groupings.
const (
	// ByOwner groups sessions by who holds them: the pod once known, else
	// the systemd unit, else the process name (events.Owner).
	ByOwner GroupBy = "owner"
	// ByDestination groups sessions by the peer's network (its /24 for
	// IPv4, its /64 for IPv6) and the service port (DestinationOf).
	ByDestination GroupBy = "destination"
)

// ParseGroupBy returns the grouping named s.
func ParseGroupBy(s string) (GroupBy, bool) {
	switch GroupBy(s) {
	case ByOwner, ByDestination:
		return GroupBy(s), true
	}
	return "", false
}

// Group counts the sessions of one owner or one destination.
type Group struct {
	Owner string `json:"owner,omitempty"`
	// Destination is the peer's network ("192.0.2.0/24", "2001:db8::/64");
	// Port the service port, and PortSide whose port it is: "remote" when
	// this host connected to the peer's port, "local" when the peer
	// connected to ours.
	Destination string `json:"destination,omitempty"`
	Port        uint16 `json:"port,omitempty"`
	PortSide    string `json:"port_side,omitempty"`
	// Ghosts counts confirmed ghosts not yet killed; Suspects every session
	// listed that was not killed, ghosts included; Killed the ones ghostd ended.
	Ghosts   int `json:"ghosts"`
	Suspects int `json:"suspects"`
	Killed   int `json:"killed"`
}

// Port sides of a destination.
const (
	PortRemote = "remote"
	PortLocal  = "local"
)

// Ephemeral ports: Linux's default ip_local_port_range.
const (
	ephemeralLow  = 32768
	ephemeralHigh = 60999
)

func ephemeral(p uint16) bool { return p >= ephemeralLow && p <= ephemeralHigh }

// DestinationOf returns the session's destination: the remote address's
// /24 (IPv4, IPv4-mapped included) or /64 (IPv6), and the service port.
// The service port is the remote port, unless the remote port is an
// ephemeral one (32768–60999) and the local port is not: then the peer
// connected to this host, and the local port is the service. ok is false
// when the addresses do not parse.
func DestinationOf(s *Session) (prefix netip.Prefix, port uint16, side string, ok bool) {
	remote, err := netip.ParseAddrPort(s.Remote)
	if err != nil {
		return netip.Prefix{}, 0, "", false
	}
	a := remote.Addr().Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	prefix, err = a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, 0, "", false
	}
	port, side = remote.Port(), PortRemote
	if local, err := netip.ParseAddrPort(s.Local); err == nil && ephemeral(port) && !ephemeral(local.Port()) {
		port, side = local.Port(), PortLocal
	}
	return prefix, port, side, true
}

// OwnerOf is the owner a session is grouped under (events.Owner).
func OwnerOf(s *Session) string { return events.Owner(s.PodName(), s.Unit, s.Comm) }

// PodName is the session's pod as "<namespace>/<pod>", or "" when the
// container runtime named none.
func (s *Session) PodName() string { return PodName(s.K8sNamespace, s.Pod) }

// PodName joins a pod's Kubernetes namespace and name; "" without a pod.
func PodName(k8sNamespace, pod string) string {
	if pod == "" {
		return ""
	}
	return k8sNamespace + "/" + pod
}

// Grouper counts sessions into groups, one session at a time, so that a
// stream of 200 000 sessions never needs holding.
type Grouper struct {
	by     GroupBy
	groups map[groupKey]*Group
}

type groupKey struct {
	owner  string
	prefix netip.Prefix
	port   uint16
	side   string
}

// NewGrouper returns an empty grouper.
func NewGrouper(by GroupBy) *Grouper {
	return &Grouper{by: by, groups: map[groupKey]*Group{}}
}

// Add counts one session.
func (g *Grouper) Add(s *Session) {
	var k groupKey
	if g.by == ByDestination {
		p, port, side, ok := DestinationOf(s)
		if !ok {
			return
		}
		k = groupKey{prefix: p, port: port, side: side}
	} else {
		k = groupKey{owner: OwnerOf(s)}
	}
	grp := g.groups[k]
	if grp == nil {
		grp = &Group{Owner: k.owner, Port: k.port, PortSide: k.side}
		if k.prefix.IsValid() {
			grp.Destination = k.prefix.String()
		}
		g.groups[k] = grp
	}
	switch {
	case s.Killed:
		grp.Killed++
	case s.Ghost:
		grp.Ghosts++
		grp.Suspects++
	default:
		grp.Suspects++
	}
}

// Groups returns the groups, the most ghosts first, then the most
// suspects, then by name.
func (g *Grouper) Groups() []Group {
	out := make([]Group, 0, len(g.groups))
	for _, grp := range g.groups {
		out = append(out, *grp)
	}
	slices.SortFunc(out, compareGroups)
	return out
}

func compareGroups(a, b Group) int {
	return cmp.Or(
		cmp.Compare(b.Ghosts, a.Ghosts),
		cmp.Compare(b.Suspects, a.Suspects),
		cmp.Compare(b.Killed, a.Killed),
		cmp.Compare(a.Owner, b.Owner),
		cmp.Compare(a.Destination, b.Destination),
		cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.PortSide, b.PortSide),
	)
}

// GroupSessions groups a list of sessions.
func GroupSessions(sessions []Session, by GroupBy) []Group {
	g := NewGrouper(by)
	for i := range sessions {
		g.Add(&sessions[i])
	}
	return g.Groups()
}

// OtherOwners is the owner label that ghostd_ghost_sessions_by_owner gives
// the owners beyond its top K.
const OtherOwners = "other"

// TopOwners keeps the k owners with the most ghosts (ties by name) and
// adds the rest up under OtherOwners, so the metric has at most k+1
// series. An owner that is itself named "other" is counted with them.
func TopOwners(ghosts map[string]int, k int) map[string]int {
	type oc struct {
		owner string
		n     int
	}
	var all []oc
	for o, n := range ghosts {
		if n > 0 {
			all = append(all, oc{o, n})
		}
	}
	slices.SortFunc(all, func(a, b oc) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return cmp.Compare(a.owner, b.owner)
	})
	out := make(map[string]int, min(len(all), k+1))
	for i, x := range all {
		if i < k {
			out[x.owner] += x.n
		} else {
			out[OtherOwners] += x.n
		}
	}
	return out
}
