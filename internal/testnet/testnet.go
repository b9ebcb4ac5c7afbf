package testnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
)

// ErrUnsupported is returned (and tests are skipped) where network namespaces do not exist.
var ErrUnsupported = errors.New("testnet: network namespaces need Linux")

// NS is a named network namespace (as `ip netns add` creates it) owned by one test.
type NS struct {
	Name  string // gd-<tag>-<hex>
	Path  string // /run/netns/Name
	Inode uint64 // nsfs inode: the namespace's identity, as inventory reports it

	deleted atomic.Bool // by Delete, before the test's cleanup
}

// Net is three hosts in a row: Client <-veth-> Router <-veth-> Server.
//
// Addresses: the client side is 192.0.2.0/24 and 2001:db8:1::/64, the server
// side 198.51.100.0/24 and 2001:db8:2::/64; the router is .1 / ::1 on both.
// Client and server only have routes to each other's prefix (no default route).
// The router forwards both families through conntrack with `ct state invalid
// counter drop` and nf_conntrack_tcp_loose=0: a flow it forgets stays forgotten.
type Net struct {
	Client, Router, Server *NS
	ClientV4, ServerV4     netip.Addr // 192.0.2.2, 198.51.100.2
	ClientV6, ServerV6     netip.Addr // 2001:db8:1::2, 2001:db8:2::2
	RouterClientV4         netip.Addr // 192.0.2.1
	RouterServerV4         netip.Addr // 198.51.100.1
	RouterClientV6         netip.Addr // 2001:db8:1::1
	RouterServerV6         netip.Addr // 2001:db8:2::1
}

// Interface names inside the namespaces (each namespace has its own, so they need not be unique).
const (
	ClientIf       = "eth0" // in Client
	ServerIf       = "eth0" // in Server
	RouterClientIf = "c0"   // in Router, towards Client
	RouterServerIf = "s0"   // in Router, towards Server
)

var (
	clientV4 = netip.MustParseAddr("192.0.2.2")
	serverV4 = netip.MustParseAddr("198.51.100.2")
	clientV6 = netip.MustParseAddr("2001:db8:1::2")
	serverV6 = netip.MustParseAddr("2001:db8:2::2")
	rtrCV4   = netip.MustParseAddr("192.0.2.1")
	rtrSV4   = netip.MustParseAddr("198.51.100.1")
	rtrCV6   = netip.MustParseAddr("2001:db8:1::1")
	rtrSV6   = netip.MustParseAddr("2001:db8:2::1")
)

// Tuple returns a TCP connection's local and remote address, with v4-mapped
// addresses unmapped. It returns zero values for anything but *net.TCPAddr.
func Tuple(c net.Conn) (local, remote netip.AddrPort) {
	return addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
}

func addrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// nftMatch returns an nft match for packets sent from src to dst over TCP.
func nftMatch(src, dst netip.AddrPort) string {
	fam := "ip"
	if src.Addr().Is6() {
		fam = "ip6"
	}
	return fmt.Sprintf("%s saddr %s %s daddr %s tcp sport %d tcp dport %d",
		fam, src.Addr(), fam, dst.Addr(), src.Port(), dst.Port())
}
