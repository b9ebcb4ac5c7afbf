package realserver

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

// TestServersSeeClientsBehindMasquerade starts each server, connects one
// IPv4 and one IPv6 client through the masquerading router, and checks that
// each answers and that the server's own view lists exactly the tuple the
// router's conntrack says it chose; and that ArmKeepalive reaches the
// server's socket (its keepalive timer then runs in ss).
func TestServersSeeClientsBehindMasquerade(t *testing.T) {
	for _, k := range Kinds {
		t.Run(k.Name, func(t *testing.T) {
			n := testnet.NewMasquerade(t)
			s := k.Start(t, n.Server, n.ServerV4, n.ServerV6)
			var want []netip.AddrPort
			for _, network := range []string{"tcp4", "tcp6"} {
				c := s.Dial(t, n.Client, network)
				if err := c.Ask(); err != nil {
					t.Fatalf("%s: %v", network, err)
				}
				local, remote := n.ServerSide(t, c.Conn)
				if local != s.Addr(network) {
					t.Errorf("%s: server side local %s, want %s", network, local, s.Addr(network))
				}
				if r := remote.Addr(); r != n.RouterServerV4 && r != n.RouterServerV6 {
					t.Errorf("%s: server sees %s, want the router's masquerade address", network, remote)
				}
				want = append(want, remote)
			}
			view, err := s.View()
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(want, netip.AddrPort.Compare)
			slices.SortFunc(view, netip.AddrPort.Compare)
			if !slices.Equal(view, want) {
				t.Errorf("server's view %v, want %v", view, want)
			}
			socks, err := Sockets(n.Server)
			if err != nil {
				t.Fatal(err)
			}
			armed := 0
			for _, sk := range socks {
				if slices.Contains(want, sk.Remote) {
					if err := ArmKeepalive(sk, 30*time.Second, 5*time.Second, 3); err != nil {
						t.Fatal(err)
					}
					armed++
				}
			}
			if armed != len(want) {
				t.Fatalf("armed %d sockets, want %d: %+v", armed, len(want), socks)
			}
			out := n.Server.Exec(t, "ss", "-tnoH", "state", "established", "dport", "!=", "0")
			t.Logf("%s", out)
		})
	}
}
