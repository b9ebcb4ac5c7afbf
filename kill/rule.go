package kill

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/yamlconf"
)

// Rule selects connections. It matches when every non-empty field matches;
// within a field, any entry may match. An empty rule is invalid.
type Rule struct {
	CIDRs []CIDR   `yaml:"cidrs"` // the remote address is in one of them
	Ports []int    `yaml:"ports"` // the local or the remote port is one of them
	Netns []string `yaml:"netns"` // the namespace name as the JSON shows it matches one of these path.Match patterns
	Comms []string `yaml:"comms"` // the owner's comm matches one of these patterns
	Units []string `yaml:"units"` // the owner's systemd unit matches one of these patterns
	// Pods match the socket's pod, "<k8s namespace>/<pod>" as the container
	// runtime names it ("shop/*"), and Containers its owner's container name.
	Pods       []string `yaml:"pods"`
	Containers []string `yaml:"containers"`
}

// CIDR is a rule's network. In YAML it is a prefix such as 192.0.2.0/24
// with no host bits set, or a single address, taken as /32 or /128. A
// v4-mapped one (::ffff:192.0.2.7, as ghostd prints a dual-stack socket's
// IPv4 peer) is taken as its IPv4 form, since sockets are matched on their
// unmapped remote address.
type CIDR struct{ netip.Prefix }

// ParseCIDR parses s as a CIDR.
func ParseCIDR(s string) (CIDR, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return CIDR{}, fmt.Errorf("invalid CIDR %q", s)
		}
		return unmapped(netip.PrefixFrom(a, a.BitLen())), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return CIDR{}, fmt.Errorf("invalid CIDR %q", s)
	}
	if p.Masked() != p {
		return CIDR{}, fmt.Errorf("invalid CIDR %q: host bits set (did you mean %s?)", s, p.Masked())
	}
	return unmapped(p), nil
}

// unmapped is p, or its IPv4 form when p is a v4-mapped prefix (one with no
// host bits set that holds a v4-mapped address is /96 or longer).
func unmapped(p netip.Prefix) CIDR {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return CIDR{netip.PrefixFrom(a.Unmap(), p.Bits()-96)}
	}
	return CIDR{p}
}

// UnmarshalYAML parses a scalar with ParseCIDR.
func (c *CIDR) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("invalid CIDR: want an address or a prefix")
	}
	p, err := ParseCIDR(n.Value)
	if err != nil {
		return err
	}
	*c = p
	return nil
}

// MarshalYAML writes the prefix.
func (c CIDR) MarshalYAML() (any, error) { return c.String(), nil }

// validate reports the first problem with the rule as a *yamlconf.KeyError
// keyed relative to the rule.
func (r Rule) validate() error {
	if len(r.CIDRs)+len(r.Ports)+len(r.Netns)+len(r.Comms)+len(r.Units)+len(r.Pods)+len(r.Containers) == 0 {
		return yamlconf.Errorf("", "empty rule: give at least one of cidrs, ports, netns, comms, units, pods, containers")
	}
	for i, p := range r.CIDRs {
		if !p.IsValid() || p.Masked() != p.Prefix {
			return yamlconf.Errorf(fmt.Sprintf("cidrs[%d]", i), "invalid CIDR %q", p)
		}
	}
	for i, p := range r.Ports {
		if p < 1 || p > 65535 {
			return yamlconf.Errorf(fmt.Sprintf("ports[%d]", i), "invalid port %d: want 1 to 65535", p)
		}
	}
	for _, f := range []struct {
		name string
		vals []string
		max  int
	}{{"netns", r.Netns, 0}, {"comms", r.Comms, maxCommLen}, {"units", r.Units, 0}, {"pods", r.Pods, 0}, {"containers", r.Containers, 0}} {
		for i, v := range f.vals {
			key := fmt.Sprintf("%s[%d]", f.name, i)
			if v == "" {
				return yamlconf.Errorf(key, "empty string")
			}
			if f.max > 0 && len(v) > f.max {
				return yamlconf.Errorf(key, "%q is longer than the kernel's %d-byte process names", v, f.max)
			}
			if _, err := path.Match(v, ""); err != nil {
				return yamlconf.Errorf(key, "pattern %q: %v", v, err)
			}
		}
	}
	return nil
}

// Matches reports whether the rule selects the candidate, as an allow rule
// does: an owner that is not known matches no comm or unit pattern.
func (r Rule) Matches(c *Candidate) bool { return r.matches(c, false) }

// Denies reports whether the rule, as a deny rule, selects the candidate. It
// fails closed: when the rule names comms or units and the socket's owner is
// not known (io_uring fixed files, sockets in flight over SCM_RIGHTS, an
// unreadable /proc, a race with exec), the owner counts as matching, so
// "deny: units: [sshd.service]" also protects an sshd socket whose owner
// could not be found. Likewise a rule naming pods or containers denies a
// socket whose pod and container the runtime did not name while its owner is
// unknown or in a container (the runtime down, or not asked), and so does
// one whose netns patterns name pods ("kube-system/*").
func (r Rule) Denies(c *Candidate) bool { return r.matches(c, true) }

func (r Rule) matches(c *Candidate, failClosed bool) bool {
	if len(r.CIDRs) > 0 {
		addr := c.Socket.Remote.Addr().Unmap()
		if !slices.ContainsFunc(r.CIDRs, func(p CIDR) bool { return unmapped(p.Prefix).Contains(addr) }) {
			return false
		}
	}
	if len(r.Ports) > 0 && !slices.Contains(r.Ports, int(c.Socket.Local.Port())) && !slices.Contains(r.Ports, int(c.Socket.Remote.Port())) {
		return false
	}
	if !matchAny(r.Netns, c.Netns) && !(failClosed && namesPods(r.Netns) && c.podUnknown()) {
		return false
	}
	if failClosed && (len(r.Comms) > 0 || len(r.Units) > 0) && c.ownerUnknown() {
		return true
	}
	if failClosed && (len(r.Pods) > 0 || len(r.Containers) > 0) && c.podUnknown() {
		return true
	}
	return matchAny(r.Comms, c.Comm) && matchAny(r.Units, c.Unit) &&
		matchAny(r.Pods, c.Pod) && matchAny(r.Containers, c.Container)
}

// namesPods reports whether a netns pattern names pod namespaces
// ("<k8s namespace>/<pod>"): no other namespace name has a slash. A pod's
// namespace the runtime did not name goes by another name ("cni-…", a
// container id), so a deny rule naming pods fails closed on it, as Pods do.
func namesPods(netns []string) bool {
	return slices.ContainsFunc(netns, func(p string) bool { return strings.Contains(p, "/") })
}

// matchAny reports whether s matches one of the patterns; no patterns match anything.
func matchAny(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}
