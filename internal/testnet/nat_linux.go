package testnet

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// NAT in the client's own namespace: the shapes that make a connection's
// answers carry another tuple than its socket's (DNAT in OUTPUT to a Service
// VIP, masquerade on the way out, REDIRECT to a local proxy).

// Addresses the NAT helpers use: a virtual address (a Service VIP) the
// client routes towards the router, and a source address on the client's
// loopback that only masquerade makes reachable.
var (
	VIPv4      = netip.MustParseAddr("203.0.113.10")
	VIPv6      = netip.MustParseAddr("2001:db8:3::10")
	InternalV4 = netip.MustParseAddr("203.0.113.50")
	InternalV6 = netip.MustParseAddr("2001:db8:5::50")
)

// VIPPort is the virtual service's port.
const VIPPort = 80

// MasqueradePorts is the source port range masquerade maps to.
const MasqueradePorts = "40000-40999"

func family(network string) (nft, ip string) {
	if network == "tcp6" {
		return "ip6", "-6"
	}
	return "ip", "-4"
}

// VIP returns the virtual service address for network ("tcp4" or "tcp6").
func VIP(network string) netip.AddrPort {
	if network == "tcp6" {
		return netip.AddrPortFrom(VIPv6, VIPPort)
	}
	return netip.AddrPortFrom(VIPv4, VIPPort)
}

// routeVIP gives the client a route to the VIP through the router: the
// routing decision is taken before OUTPUT's NAT.
func (n *Net) routeVIP(t testing.TB, network string) {
	t.Helper()
	_, ipf := family(network)
	via, pfx := n.RouterClientV4.String(), "203.0.113.10/32"
	if network == "tcp6" {
		via, pfx = n.RouterClientV6.String(), "2001:db8:3::10/128"
	}
	if out, err := n.Client.ExecErr("", "ip", ipf, "route", "replace", pfx, "via", via); err != nil {
		t.Fatalf("testnet: route VIP: %v: %s", err, out)
	}
}

// DNATOutput installs, in the client's OUTPUT chain, the Kubernetes Service
// shape: connections to VIP(network) are DNATed to backend. The client gets
// a route to the VIP. It returns the VIP.
func (n *Net) DNATOutput(t testing.TB, network string, backend netip.AddrPort) netip.AddrPort {
	t.Helper()
	n.routeVIP(t, network)
	vip := VIP(network)
	fam, _ := family(network)
	to := backend.String() // [v6]:port form for ip6
	n.Client.Nft(t, fmt.Sprintf(`table inet tn_dnat {
	chain out {
		type nat hook output priority -100; policy accept;
		%s daddr %s tcp dport %d counter dnat %s to %s
	}
}
`, fam, vip.Addr(), vip.Port(), fam, to))
	return vip
}

// RedirectOutput installs, in the client's OUTPUT chain, a REDIRECT of
// connections to VIP(network) to a local proxy listening on port. It
// returns the VIP.
func (n *Net) RedirectOutput(t testing.TB, network string, port uint16) netip.AddrPort {
	t.Helper()
	n.routeVIP(t, network)
	vip := VIP(network)
	fam, _ := family(network)
	n.Client.Nft(t, fmt.Sprintf(`table inet tn_redirect {
	chain out {
		type nat hook output priority -100; policy accept;
		%s daddr %s tcp dport %d counter redirect to :%d
	}
}
`, fam, vip.Addr(), vip.Port(), port))
	return vip
}

// Masquerade gives the client an internal source address on its loopback
// (InternalV4 / InternalV6, which nobody else routes) and masquerades what
// leaves its eth0 to the client's own address and a port in
// MasqueradePorts. It returns the internal address for network.
func (n *Net) Masquerade(t testing.TB, network string) netip.Addr {
	t.Helper()
	_, ipf := family(network)
	src, pfx := InternalV4, "203.0.113.50/32"
	if network == "tcp6" {
		src, pfx = InternalV6, "2001:db8:5::50/128"
	}
	if out, err := n.Client.ExecErr("", "ip", ipf, "addr", "replace", pfx, "dev", "lo"); err != nil {
		t.Fatalf("testnet: internal address: %v: %s", err, out)
	}
	n.Client.Nft(t, fmt.Sprintf(`table inet tn_masq {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %q meta l4proto tcp counter masquerade to :%s
	}
}
`, ClientIf, MasqueradePorts))
	return src
}

// DialFrom connects from a socket inside the namespace bound to local
// (port 0: any), timeout DialTimeout; closed in t.Cleanup.
func (ns *NS) DialFrom(t testing.TB, network string, local netip.Addr, remote netip.AddrPort) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: DialTimeout}
	if local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
	}
	return ns.dial(t, d, network, remote.String())
}

// Accept accepts one connection on l within DialTimeout; it is closed in t.Cleanup.
func Accept(t testing.TB, l net.Listener) net.Conn {
	t.Helper()
	if err := l.(*net.TCPListener).SetDeadline(time.Now().Add(DialTimeout)); err != nil {
		t.Fatal(err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("testnet: accept: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// GoSilent makes the namespace drop every packet in both directions
// (loopback excepted) until the end of the test: a host that vanished.
func (ns *NS) GoSilent(t testing.TB) {
	t.Helper()
	ns.Nft(t, `table inet tn_silent {
	chain in {
		type filter hook input priority -10; policy accept;
		iifname != "lo" counter drop
	}
	chain out {
		type filter hook output priority -10; policy accept;
		oifname != "lo" counter drop
	}
}
`)
}

// LoseConn makes the namespace forget connection c without telling its
// peer: it aborts c (SO_LINGER 0) with c's own segments dropped, so its RST
// never leaves, then removes the drop rule. The next segment the peer sends
// is answered with a RST. The drop matches c's own tuple before any source
// NAT, so it works for a socket behind REDIRECT too.
func (ns *NS) LoseConn(t testing.TB, c net.Conn) {
	t.Helper()
	tc, ok := c.(*net.TCPConn)
	if !ok {
		t.Fatalf("testnet: LoseConn: %T is not a *net.TCPConn", c)
	}
	local, remote := Tuple(c)
	table := "tn_lose_" + randHex(4)
	ns.Nft(t, fmt.Sprintf(`table inet %s {
	chain out {
		type filter hook output priority -10; policy accept;
		%s counter drop
	}
}
`, table, nftMatch(local, remote)))
	if err := tc.SetLinger(0); err != nil {
		t.Fatalf("testnet: LoseConn: linger: %v", err)
	}
	if err := tc.Close(); err != nil {
		t.Fatalf("testnet: LoseConn: close: %v", err)
	}
	out := ns.Exec(t, "nft", "list", "table", "inet", table)
	if pk := counterPackets(out); pk < 1 {
		t.Fatalf("testnet: LoseConn: the RST was not dropped (counter %d):\n%s", pk, out)
	}
	ns.Nft(t, "delete table inet "+table+"\n")
}

// CountIn installs an input counter in the namespace for TCP segments from
// src to dst (as they arrive, after the sender's NAT) and returns a func that
// reads it.
func (ns *NS) CountIn(t testing.TB, src, dst netip.AddrPort) func() uint64 {
	t.Helper()
	table := "tn_count_" + randHex(4)
	ns.Nft(t, fmt.Sprintf(`table inet %s {
	chain in {
		type filter hook input priority -300; policy accept;
		%s counter
	}
}
`, table, nftMatch(src, dst)))
	return func() uint64 {
		return counterPackets(ns.Exec(t, "nft", "list", "table", "inet", table))
	}
}
