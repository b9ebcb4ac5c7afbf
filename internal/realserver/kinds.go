package realserver

import (
	"net/netip"
	"testing"

	"github.com/ghostd/ghostd/internal/testnet"
)

// Starter starts one kind of real server in ns, for clients of v4 and v6.
type Starter func(t testing.TB, ns *testnet.NS, v4, v6 netip.Addr) *Server

// Kind is one kind of real server the tests run.
type Kind struct {
	Name  string // as Server.Name
	Start Starter
}

// Kinds lists every kind of real server, in the order the tests run them.
var Kinds = []Kind{{"postgresql", PostgreSQL}, {"redis", Redis}, {"nginx", Nginx}, {"go", Go}}
