package testnet

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// masqPair connects a client to a server listener through the masquerading
// router and returns the server's accepted end and the client's end.
func masqPair(t *testing.T, n *Net, network string) (server, client net.Conn) {
	t.Helper()
	l := n.Server.Listen(t, network, n.serverAddr(network))
	defer l.Close()
	client = n.Client.Dial(t, network, l.Addr().String())
	l.(*net.TCPListener).SetDeadline(time.Now().Add(DialTimeout))
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server, client
}

// TestMasquerade: the server sees the router's address; ServerSide reads
// the very tuple the server's socket has; after ForgetClientFlow the
// client's next segment is dropped as INVALID and the router's own stack
// answers the server's next segment with a RST (it is addressed to the
// router, whose conntrack no longer maps it to anyone), unless the router
// drops it (ForgetClientFlowSilently); DropFlow silences
// one connection both ways and leaves the others alone.
func TestMasquerade(t *testing.T) {
	n := NewMasquerade(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			server, client := masqPair(t, n, network)
			sLocal, sRemote := Tuple(server)
			local, remote := n.ServerSide(t, client)
			if local != sLocal || remote != sRemote {
				t.Fatalf("ServerSide = %s %s, the server's socket has %s %s", local, remote, sLocal, sRemote)
			}
			if r := remote.Addr(); r != n.RouterServerV4 && r != n.RouterServerV6 {
				t.Errorf("server sees %s, want the router's server-side address", remote)
			}

			drops := n.InvalidDrops(t)
			n.ForgetClientFlow(t, client)
			if _, err := client.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if !waitFor(3*time.Second, func() bool { return n.InvalidDrops(t) > drops }) {
				t.Errorf("the client's segment after ForgetClientFlow was not dropped as INVALID")
			}
			if _, err := server.Write([]byte("y")); err != nil {
				t.Fatal(err)
			}
			server.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := server.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("server read after the router forgot the flow = %v, want ECONNRESET from the router", err)
			}

			quiet, quietC := masqPair(t, n, network)
			n.ForgetClientFlowSilently(t, quietC)
			if _, err := quiet.Write([]byte("y")); err != nil {
				t.Fatal(err)
			}
			if !waitFor(3*time.Second, func() bool { return TCPInfo(t, quiet).Retransmits > 0 }) {
				t.Errorf("ForgetClientFlowSilently: the server's segment was answered")
			}
			if err := readTimeout(quiet, 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("ForgetClientFlowSilently: server read = %v, want nothing at all (a timeout)", err)
			}

			dead, deadC := masqPair(t, n, network)
			live, liveC := masqPair(t, n, network)
			n.DropFlow(t, deadC)
			for _, c := range []net.Conn{dead, live} {
				if _, err := c.Write([]byte("z")); err != nil {
					t.Fatal(err)
				}
			}
			liveC.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := liveC.Read(make([]byte, 1)); err != nil {
				t.Errorf("the other connection's client: %v", err)
			}
			if !waitFor(2*time.Second, func() bool { return TCPInfo(t, dead).Retransmits > 0 }) {
				t.Errorf("DropFlow: the server's segment was acknowledged")
			}
		})
	}
}

func readTimeout(c net.Conn, d time.Duration) error {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	_, err := c.Read(make([]byte, 1))
	return err
}
