//go:build !linux

package testnet

import (
	"net"
	"net/netip"
	"testing"
)

// NewMasquerade skips the test: network namespaces need Linux.
func NewMasquerade(t testing.TB) *Net { skip(t); return nil }

// ServerSide skips the test.
func (n *Net) ServerSide(t testing.TB, client net.Conn) (local, remote netip.AddrPort) {
	skip(t)
	return
}

// ForgetClientFlow skips the test.
func (n *Net) ForgetClientFlow(t testing.TB, client net.Conn) { skip(t) }

// DropFlow skips the test.
func (n *Net) DropFlow(t testing.TB, client net.Conn) { skip(t) }

// ForgetClientFlowSilently skips the test.
func (n *Net) ForgetClientFlowSilently(t testing.TB, client net.Conn) { skip(t) }
