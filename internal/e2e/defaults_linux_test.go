package e2e

import (
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

// TestDefaultsConfirmWithinTwoMinutes runs ghostd on its default thresholds
// and timing (60 s idle, 15 s scans, 3 probes 1 s apart) and checks that a
// peer that goes quiet and dies is confirmed a ghost within 2 minutes, both
// for a socket without keepalive and for one with keepalive on the kernel's
// defaults (PostgreSQL's), where the kernel's own keepalive would take
// 2 h 11 min.
func TestDefaultsConfirmWithinTwoMinutes(t *testing.T) {
	needRootLong(t, "waits out the default 60 s idle threshold")
	t.Parallel()
	n := testnet.New(t)
	s, c := idlePair(t, n, "tcp4")
	ks, kc := keepaliveOnDefaults(t, n) // PostgreSQL's shape: keepalive on, the kernel's 7200 s
	roundTrip(t, &scenario{name: "last exchange", server: s, client: c})
	roundTrip(t, &scenario{name: "last exchange, keepalive on", server: ks, client: kc})
	quiet := time.Now() // the connections go quiet now...
	n.DropFromClient(t, c)
	n.DropFromClient(t, kc)
	d := startDaemon(t, "", "--netns", n.Server.Name) // ...and their peers are gone
	keys := map[string]bool{rowKey(s): true, rowKey(ks): true}
	took := waitFor(t, 2*time.Minute, "ghosts confirmed on defaults", func() (bool, string) {
		doc, err := d.sessions("?ghost=true")
		if err != nil {
			return false, err.Error()
		}
		found := 0
		for i := range doc.Sessions {
			if keys[sessionKey(&doc.Sessions[i])] {
				found++
			}
		}
		return found == len(keys), fmt.Sprintf("%d ghosts listed, %d of ours", len(doc.Sessions), found)
	})
	t.Logf("defaults: ghost confirmed %.0fs after the connection went quiet (waitFor %.0fs)", time.Since(quiet).Seconds(), took.Seconds())
	if since := time.Since(quiet); since > 2*time.Minute {
		t.Errorf("confirmed %v after going quiet, want ≤ 2m", since)
	}
}

// keepaliveOnDefaults returns a connection whose server end has SO_KEEPALIVE
// on and nothing else, as PostgreSQL sets it: the namespace's sysctls (7200 s
// in a fresh namespace) decide. The listener is made with Go's keepalive
// off so that no TCP_KEEPIDLE is ever set on the server end.
func keepaliveOnDefaults(t *testing.T, n *testnet.Net) (server, client net.Conn) {
	t.Helper()
	l := n.Server.ListenNoKeepalive(t, "tcp4", net.JoinHostPort(n.ServerV4.String(), "0"))
	defer l.Close()
	client = n.Client.Dial(t, "tcp4", l.Addr().String())
	noKeepalive(t, client)
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	testnet.Control(t, server.(*net.TCPConn), "SO_KEEPALIVE", func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	})
	return server, client
}
