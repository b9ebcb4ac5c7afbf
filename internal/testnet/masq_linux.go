package testnet

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
)

// masqRuleset makes the router masquerade: everything it forwards out of
// its server-side interface leaves with the router's own address there.
var masqRuleset = fmt.Sprintf(`table inet gd_nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %q masquerade
	}
}
`, RouterServerIf)

// NewMasquerade is New with a router that also masquerades: the server sees
// every client connection coming from RouterServerV4 or RouterServerV6, on a
// port the router chose (read it with ServerSide), as behind a home router,
// a cloud NAT gateway or a Kubernetes node's SNAT.
func NewMasquerade(t testing.TB) *Net {
	t.Helper()
	n := New(t)
	n.Router.Nft(t, masqRuleset)
	return n
}

// conntrackFamily returns conntrack's -f argument for a tuple.
func conntrackFamily(a netip.AddrPort) string {
	if a.Addr().Is6() {
		return "ipv6"
	}
	return "ipv4"
}

// origArgs selects a connection opened by client by its original
// (client-side, before NAT) tuple.
func origArgs(client net.Conn) []string {
	local, remote := Tuple(client)
	return []string{"-f", conntrackFamily(local), "-p", "tcp",
		"--orig-src", local.Addr().String(), "--orig-dst", remote.Addr().String(),
		"--sport", strconv.Itoa(int(local.Port())), "--dport", strconv.Itoa(int(remote.Port()))}
}

var replyRE = regexp.MustCompile(`src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)`)

// ServerSide returns the connection's 4-tuple as the server's socket holds
// it (local = the server's address, remote = what the router made of the
// client), read from the reply direction of the router's conntrack entry.
func (n *Net) ServerSide(t testing.TB, client net.Conn) (local, remote netip.AddrPort) {
	t.Helper()
	out := n.Router.Exec(t, append([]string{"conntrack", "-L"}, origArgs(client)...)...)
	m := replyRE.FindAllStringSubmatch(out, -1)
	if len(m) != 2 {
		t.Fatalf("testnet: ServerSide: want exactly one entry with its reply tuple, got %q", out)
	}
	r := m[1] // the second tuple is the reply direction: server -> router
	sp, err1 := strconv.ParseUint(r[3], 10, 16)
	dp, err2 := strconv.ParseUint(r[4], 10, 16)
	src, err3 := netip.ParseAddr(r[1])
	dst, err4 := netip.ParseAddr(r[2])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		t.Fatalf("testnet: ServerSide: cannot parse reply tuple %q", r[0])
	}
	return netip.AddrPortFrom(src, uint16(sp)), netip.AddrPortFrom(dst, uint16(dp))
}

// ForgetClientFlow deletes the router's conntrack entry of a connection the
// client opened (found by its original tuple, so it works behind the
// masquerade too). With nf_conntrack_tcp_loose=0 the router then drops the
// flow's next segments as INVALID, both ways: the NAT forgot the flow.
func (n *Net) ForgetClientFlow(t testing.TB, client net.Conn) {
	t.Helper()
	n.Router.Exec(t, append([]string{"conntrack", "-D"}, origArgs(client)...)...)
}

// DropFlow makes the client host drop every packet of one connection, both
// ways, until the end of the test: for that connection the client host is
// dead (powered off, cable cut) while the client's other connections live on.
func (n *Net) DropFlow(t testing.TB, client net.Conn) {
	t.Helper()
	local, remote := Tuple(client)
	table := "tn_dead_" + randHex(4)
	n.Client.Nft(t, fmt.Sprintf(`table inet %s {
	chain in {
		type filter hook input priority -10; policy accept;
		%s counter drop
	}
	chain out {
		type filter hook output priority -10; policy accept;
		%s counter drop
	}
}
`, table, nftMatch(remote, local), nftMatch(local, remote)))
}

// ForgetClientFlowSilently is ForgetClientFlow on a NAT gateway that also
// drops what arrives for a mapping it no longer has (as AWS NAT Gateway and
// Azure's NAT do), instead of letting its own stack answer with a RST: the
// server's next segments of the flow vanish at the router.
func (n *Net) ForgetClientFlowSilently(t testing.TB, client net.Conn) {
	t.Helper()
	server, mapped := n.ServerSide(t, client)
	n.Router.Nft(t, fmt.Sprintf(`table inet tn_natdrop_%s {
	chain in {
		type filter hook input priority -10; policy accept;
		%s counter drop
	}
}
`, randHex(4), nftMatch(server, mapped)))
	n.ForgetClientFlow(t, client)
}
