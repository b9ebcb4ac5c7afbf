package testnet

import (
	"io"
	"net"
	"net/netip"
	"testing"
)

// Connect dials ln (a listener of ns) from ns and returns both ends of the
// connection; both are closed in t.Cleanup.
func (ns *NS) Connect(t testing.TB, ln net.Listener) (client, server net.Conn) {
	t.Helper()
	client = ns.Dial(t, ln.Addr().Network(), ln.Addr().String())
	server, err := ln.Accept()
	if err != nil {
		t.Fatalf("testnet: %s: accept on %s: %v", ns.Name, ln.Addr(), err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// TimeWait leaves a TIME_WAIT socket in ns: it connects to ln (a listener
// of ns), closes the client first and the server once it has read the
// client's FIN. It returns the client's local address, which the TIME_WAIT
// socket keeps.
func (ns *NS) TimeWait(t testing.TB, ln net.Listener) netip.AddrPort {
	t.Helper()
	c, s := ns.Connect(t, ln)
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	c.Close()
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("testnet: %s: read after the client's close: %v, want EOF", ns.Name, err)
	}
	s.Close()
	return local
}
