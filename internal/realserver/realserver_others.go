//go:build !linux

package realserver

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

func skip(t testing.TB) { t.Helper(); t.Skip(testnet.ErrUnsupported.Error()) }

// Need skips the test: the servers run in network namespaces.
func Need(t testing.TB, bin, pkg string) string { skip(t); return "" }

// PostgreSQL skips the test.
func PostgreSQL(t testing.TB, ns *testnet.NS, v4, v6 netip.Addr) *Server { skip(t); return nil }

// Redis skips the test.
func Redis(t testing.TB, ns *testnet.NS, v4, v6 netip.Addr) *Server { skip(t); return nil }

// Nginx skips the test.
func Nginx(t testing.TB, ns *testnet.NS, v4, v6 netip.Addr) *Server { skip(t); return nil }

// Go skips the test.
func Go(t testing.TB, ns *testnet.NS, v4, v6 netip.Addr) *Server { skip(t); return nil }

// Dial skips the test.
func (s *Server) Dial(t testing.TB, ns *testnet.NS, network string) *Client { skip(t); return nil }

// Sockets returns testnet.ErrUnsupported.
func Sockets(ns *testnet.NS) ([]Socket, error) { return nil, testnet.ErrUnsupported }

// ArmKeepalive returns testnet.ErrUnsupported.
func ArmKeepalive(sk Socket, idle, interval time.Duration, count int) error {
	return testnet.ErrUnsupported
}
