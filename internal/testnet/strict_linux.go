package testnet

import (
	"strconv"
	"testing"
	"time"
)

// SetIdleTimeout makes the router forget an established TCP flow after d
// without a packet (its nf_conntrack_tcp_timeout_established, per
// namespace), as a NAT gateway or load balancer does: with
// nf_conntrack_tcp_loose=0 and INVALID dropped, the flow's next segments
// are then dropped both ways. It applies from each flow's next packet on.
func (n *Net) SetIdleTimeout(t testing.TB, d time.Duration) {
	t.Helper()
	n.Router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_timeout_established", strconv.Itoa(int(d.Seconds())))
}
