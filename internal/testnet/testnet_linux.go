package testnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/nsthread"
)

// DialTimeout bounds Dial and Pair's connection setup.
const DialTimeout = 5 * time.Second

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// NewNS creates a named network namespace gd-<tag>-<8 hex digits> with lo up,
// and removes it in t.Cleanup. It skips the test when not running as root.
// Keep tag short: the name is also used in error messages and `ip netns list`.
func NewNS(t testing.TB, tag string) *NS {
	t.Helper()
	needRoot(t)
	name := "gd-" + tag + "-" + randHex(4)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("testnet: ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name, Path: filepath.Join("/run/netns", name)}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Error(err)
		}
	})
	var st unix.Stat_t
	if err := unix.Stat(ns.Path, &st); err != nil {
		t.Fatalf("testnet: stat %s: %v", ns.Path, err)
	}
	ns.Inode = st.Ino
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("testnet: %s: lo up: %v: %s", name, err, out)
	}
	return ns
}

// Delete removes the namespace's name now (`ip netns delete`), for a test
// of a namespace that vanishes; the namespace itself lives on while
// something holds it. The test's cleanup then has nothing left to do.
func (ns *NS) Delete() error {
	if ns.deleted.Swap(true) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "delete", ns.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("testnet: ip netns delete %s: %w: %s", ns.Name, err, out)
	}
	return nil
}

// Do runs fn on a locked OS thread inside the namespace (nsthread.InNetnsAt),
// on a fresh goroutine, and returns fn's error. Sockets fn creates stay in
// the namespace; so does anything fn opens under /proc/sys/net. fn must not
// call t.Fatal (it runs on another goroutine).
func (ns *NS) Do(fn func() error) error {
	return nsthread.InNetnsAt(ns.Path, fn)
}

// ExecErr runs `ip netns exec NAME args...` and returns its combined output.
func (ns *NS) ExecErr(stdin string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("testnet: %s: %s: %w: %s", ns.Name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Exec runs `ip netns exec NAME args...` and returns its combined output; it
// fails the test with the output when the command fails.
func (ns *NS) Exec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := ns.ExecErr("", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Nft loads an nftables ruleset (`nft -f -`) inside the namespace.
func (ns *NS) Nft(t testing.TB, ruleset string) {
	t.Helper()
	if _, err := ns.ExecErr(ruleset, "nft", "-f", "-"); err != nil {
		t.Fatalf("%v\nruleset:\n%s", err, ruleset)
	}
}

// Sysctl writes value to /proc/sys/<key with dots as slashes> inside the namespace.
func (ns *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	if err := ns.sysctl(key, value); err != nil {
		t.Fatal(err)
	}
}

func (ns *NS) sysctl(kv ...string) error {
	return ns.Do(func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			p := "/proc/sys/" + strings.ReplaceAll(kv[i], ".", "/")
			if err := os.WriteFile(p, []byte(kv[i+1]), 0); err != nil {
				return fmt.Errorf("testnet: %s: sysctl %s=%s: %w", ns.Name, kv[i], kv[i+1], err)
			}
		}
		return nil
	})
}

// ReadSysctl reads a sysctl inside the namespace, trimmed.
func (ns *NS) ReadSysctl(t testing.TB, key string) string {
	t.Helper()
	var v []byte
	err := ns.Do(func() (err error) {
		v, err = os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
		return err
	})
	if err != nil {
		t.Fatalf("testnet: %s: read sysctl %s: %v", ns.Name, key, err)
	}
	return strings.TrimSpace(string(v))
}

// Listen creates a listener inside the namespace, closed in t.Cleanup.
func (ns *NS) Listen(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	l := ns.listen(t, net.ListenConfig{}, network, addr)
	t.Cleanup(func() { l.Close() })
	return l
}

// ListenNoKeepalive is Listen with Go's default keepalive off for the
// accepted connections: their keepalive is then only what the namespace's
// sysctls and SO_KEEPALIVE say, as for a server that sets SO_KEEPALIVE
// alone (PostgreSQL). The caller closes it.
func (ns *NS) ListenNoKeepalive(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	return ns.listen(t, net.ListenConfig{KeepAlive: -1}, network, addr)
}

// listen creates a listener with lc inside the namespace.
func (ns *NS) listen(t testing.TB, lc net.ListenConfig, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := ns.Do(func() (err error) {
		l, err = lc.Listen(context.Background(), network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("testnet: %s: listen %s %s: %v", ns.Name, network, addr, err)
	}
	return l
}

// Dial connects from a socket created inside the namespace (timeout
// DialTimeout); the connection is closed in t.Cleanup.
func (ns *NS) Dial(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	return ns.dial(t, net.Dialer{Timeout: DialTimeout}, network, addr)
}

// dial connects with d from a socket created inside the namespace; the
// connection is closed in t.Cleanup.
func (ns *NS) dial(t testing.TB, d net.Dialer, network, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = d.Dial(network, addr)
		return err
	})
	if err != nil {
		from := ""
		if d.LocalAddr != nil {
			from = " from " + d.LocalAddr.String()
		}
		t.Fatalf("testnet: %s: dial %s %s%s: %v", ns.Name, network, addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// routerRuleset is the stateful middlebox: conntrack on, INVALID dropped (and counted).
const routerRuleset = `table inet gd_router {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state invalid counter drop
	}
}
`

// New builds Client <-veth-> Router <-veth-> Server and removes it all in t.Cleanup.
func New(t testing.TB) *Net {
	t.Helper()
	needRoot(t)
	n := &Net{
		Client: NewNS(t, "cli"), Router: NewNS(t, "rtr"), Server: NewNS(t, "srv"),
		ClientV4: clientV4, ServerV4: serverV4, ClientV6: clientV6, ServerV6: serverV6,
		RouterClientV4: rtrCV4, RouterServerV4: rtrSV4, RouterClientV6: rtrCV6, RouterServerV6: rtrSV6,
	}
	// DAD off before the interfaces exist, so v6 addresses (link-local too) work at once.
	for _, ns := range []*NS{n.Client, n.Router, n.Server} {
		if err := ns.sysctl("net.ipv6.conf.all.accept_dad", "0", "net.ipv6.conf.default.accept_dad", "0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Router.sysctl("net.ipv4.ip_forward", "1", "net.ipv6.conf.all.forwarding", "1"); err != nil {
		t.Fatal(err)
	}
	ipBatch(t, n.Router, fmt.Sprintf(`link add %s type veth peer name %s netns %s
link add %s type veth peer name %s netns %s
addr add %s/24 dev %s
addr add %s/64 dev %s nodad
addr add %s/24 dev %s
addr add %s/64 dev %s nodad
link set %s up
link set %s up
`, RouterClientIf, ClientIf, n.Client.Name, RouterServerIf, ServerIf, n.Server.Name,
		rtrCV4, RouterClientIf, rtrCV6, RouterClientIf, rtrSV4, RouterServerIf, rtrSV6, RouterServerIf,
		RouterClientIf, RouterServerIf))
	ipBatch(t, n.Client, endBatch(ClientIf, clientV4, clientV6, "198.51.100.0/24", "2001:db8:2::/64", rtrCV4, rtrCV6))
	ipBatch(t, n.Server, endBatch(ServerIf, serverV4, serverV6, "192.0.2.0/24", "2001:db8:1::/64", rtrSV4, rtrSV6))
	// The ct expression turns conntrack on in the router; only then does its
	// per-namespace nf_conntrack_tcp_loose exist.
	n.Router.Nft(t, routerRuleset)
	n.Router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_loose", "0")
	return n
}

// OpenFDs returns how many file descriptors this process holds, for tests
// that check nothing leaks.
func OpenFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// endBatch is the ip batch that addresses an end's interface and routes the
// far end's networks through the router.
func endBatch(ifname string, v4, v6 netip.Addr, far4, far6 string, via4, via6 netip.Addr) string {
	return fmt.Sprintf(`addr add %s/24 dev %s
addr add %s/64 dev %s nodad
link set %s up
route add %s via %s
route add %s via %s
`, v4, ifname, v6, ifname, ifname, far4, via4, far6, via6)
}

func ipBatch(t testing.TB, ns *NS, batch string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", ns.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testnet: %s: ip -batch: %v: %s\nbatch:\n%s", ns.Name, err, out, batch)
	}
}

func (n *Net) serverAddr(network string) string {
	switch network {
	case "tcp4":
		return net.JoinHostPort(n.ServerV4.String(), "0")
	case "tcp6":
		return net.JoinHostPort(n.ServerV6.String(), "0")
	}
	return ""
}

// Pair connects a client socket in Client to a listener in Server through the
// router and returns both ends; network is "tcp4" or "tcp6". The server end is
// the socket ghostd watches. Both are closed in t.Cleanup.
func (n *Net) Pair(t testing.TB, network string) (server, client net.Conn) {
	t.Helper()
	addr := n.serverAddr(network)
	if addr == "" {
		t.Fatalf("testnet: Pair: network %q is not tcp4 or tcp6", network)
	}
	l := n.Server.Listen(t, network, addr)
	defer l.Close()
	client = n.Client.Dial(t, network, l.Addr().String())
	return Accept(t, l), client
}

// LoseState makes the client forget the connection without telling anyone:
// it drops the client's own packets of that 4-tuple, aborts the client socket
// (SO_LINGER 0, so its RST is dropped), then removes the drop rule. The next
// segment the server sends is answered with a RST.
func (n *Net) LoseState(t testing.TB, client net.Conn) {
	t.Helper()
	n.Client.LoseConn(t, client)
}

var counterRE = regexp.MustCompile(`counter packets (\d+)`)

// counterPackets sums the packet counters in nft list output.
func counterPackets(out string) uint64 {
	var sum uint64
	for _, m := range counterRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseUint(m[1], 10, 64)
		sum += v
	}
	return sum
}

// GoSilent makes the client drop every packet in both directions (loopback
// excepted) until n.Heal or the end of the test.
func (n *Net) GoSilent(t testing.TB) {
	t.Helper()
	n.Client.GoSilent(t)
}

// Heal removes what GoSilent and DropFromClient installed in the client.
func (n *Net) Heal(t testing.TB) {
	t.Helper()
	n.Client.Nft(t, `add table inet tn_silent
delete table inet tn_silent
add table inet tn_drop
delete table inet tn_drop
`)
}

// DropFromClient drops the client's outgoing packets of one connection (its
// ACKs), so the server's data is never acknowledged and the server
// retransmits, until n.Heal or the end of the test.
func (n *Net) DropFromClient(t testing.TB, client net.Conn) {
	t.Helper()
	local, remote := Tuple(client)
	n.Client.Nft(t, fmt.Sprintf(`table inet tn_drop {
	chain out {
		type filter hook output priority -10; policy accept;
	}
}
add rule inet tn_drop out %s counter drop
`, nftMatch(local, remote)))
}

// ForgetFlow deletes the connection's conntrack entry in the router. With
// nf_conntrack_tcp_loose=0 the router then drops the flow's next segments as INVALID.
func (n *Net) ForgetFlow(t testing.TB, server net.Conn) {
	t.Helper()
	local, remote := Tuple(server)
	fam := "ipv4"
	if local.Addr().Is6() {
		fam = "ipv6"
	}
	// The client opened the connection: the original direction is client -> server.
	n.Router.Exec(t, "conntrack", "-D", "-f", fam, "-p", "tcp",
		"--orig-src", remote.Addr().String(), "--orig-dst", local.Addr().String(),
		"--sport", strconv.Itoa(int(remote.Port())), "--dport", strconv.Itoa(int(local.Port())))
}

// ConntrackCount returns the number of conntrack entries in the router.
func (n *Net) ConntrackCount(t testing.TB) int {
	t.Helper()
	v, err := strconv.Atoi(n.Router.ReadSysctl(t, "net.netfilter.nf_conntrack_count"))
	if err != nil {
		t.Fatalf("testnet: nf_conntrack_count: %v", err)
	}
	return v
}

// InvalidDrops returns how many packets the router dropped as conntrack INVALID.
func (n *Net) InvalidDrops(t testing.TB) uint64 {
	t.Helper()
	return counterPackets(n.Router.Exec(t, "nft", "list", "chain", "inet", "gd_router", "forward"))
}

// TCPInfo reads a test connection's struct tcp_info (TCP_INFO), failing the
// test on error.
func TCPInfo(t testing.TB, c net.Conn) *unix.TCPInfo {
	t.Helper()
	var info *unix.TCPInfo
	Control(t, c.(*net.TCPConn), "TCP_INFO", func(fd int) (err error) {
		info, err = unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		return err
	})
	return info
}

// Control runs fn on the connection's file descriptor and fails the test,
// naming what, when fn or the descriptor access fails.
func Control(t testing.TB, c syscall.Conn, what string, fn func(fd int) error) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatalf("testnet: %s: %v", what, ferr)
	}
}

// Cookie returns the kernel's socket cookie (SO_COOKIE) of a test
// connection or listener: the identity the inventory reports.
func Cookie(t testing.TB, c syscall.Conn) uint64 {
	t.Helper()
	var cookie uint64
	Control(t, c, "SO_COOKIE", func(fd int) (err error) {
		cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		return err
	})
	return cookie
}

// SetMD5Key installs a TCP-MD5 key (RFC 2385) for peer on the socket fd, as
// BGP speakers do, before listen or connect.
func SetMD5Key(fd int, peer netip.Addr, key string) error {
	sig := unix.TCPMD5Sig{Keylen: uint16(len(key))}
	copy(sig.Key[:], key)
	if peer.Is4() {
		sig.Addr.Family = unix.AF_INET
		a := peer.As4()
		copy(sig.Addr.Data[2:], a[:]) // sin_port, then sin_addr
	} else {
		sig.Addr.Family = unix.AF_INET6
		a := peer.As16()
		copy(sig.Addr.Data[6:], a[:]) // sin6_port, sin6_flowinfo, then sin6_addr
	}
	return unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig)
}
