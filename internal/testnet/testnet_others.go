//go:build !linux

package testnet

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// DialTimeout bounds Dial and Pair's connection setup.
const DialTimeout = 0

func skip(t testing.TB) {
	t.Helper()
	t.Skip(ErrUnsupported.Error())
}

// Delete fails: network namespaces need Linux.
func (ns *NS) Delete() error { return ErrUnsupported }

// NewNS skips the test: network namespaces need Linux.
func NewNS(t testing.TB, tag string) *NS { skip(t); return nil }

// Do returns ErrUnsupported.
func (ns *NS) Do(fn func() error) error { return ErrUnsupported }

// ExecErr returns ErrUnsupported.
func (ns *NS) ExecErr(stdin string, args ...string) (string, error) { return "", ErrUnsupported }

// OpenFDs skips the test.
func OpenFDs(t testing.TB) int { skip(t); return 0 }

// Exec skips the test.
func (ns *NS) Exec(t testing.TB, args ...string) string { skip(t); return "" }

// Nft skips the test.
func (ns *NS) Nft(t testing.TB, ruleset string) { skip(t) }

// Sysctl skips the test.
func (ns *NS) Sysctl(t testing.TB, key, value string) { skip(t) }

// ReadSysctl skips the test.
func (ns *NS) ReadSysctl(t testing.TB, key string) string { skip(t); return "" }

// Listen skips the test.
func (ns *NS) Listen(t testing.TB, network, addr string) net.Listener { skip(t); return nil }

// Dial skips the test.
func (ns *NS) Dial(t testing.TB, network, addr string) net.Conn { skip(t); return nil }

// New skips the test: network namespaces need Linux.
func New(t testing.TB) *Net { skip(t); return nil }

// Pair skips the test.
func (n *Net) Pair(t testing.TB, network string) (server, client net.Conn) { skip(t); return nil, nil }

// LoseState skips the test.
func (n *Net) LoseState(t testing.TB, client net.Conn) { skip(t) }

// GoSilent skips the test.
func (n *Net) GoSilent(t testing.TB) { skip(t) }

// Heal skips the test.
func (n *Net) Heal(t testing.TB) { skip(t) }

// DropFromClient skips the test.
func (n *Net) DropFromClient(t testing.TB, client net.Conn) { skip(t) }

// ForgetFlow skips the test.
func (n *Net) ForgetFlow(t testing.TB, server net.Conn) { skip(t) }

// ConntrackCount skips the test.
func (n *Net) ConntrackCount(t testing.TB) int { skip(t); return 0 }

// InvalidDrops skips the test.
func (n *Net) InvalidDrops(t testing.TB) uint64 { skip(t); return 0 }

// Ping returns ErrUnsupported.
func (ns *NS) Ping(dst netip.Addr, timeout time.Duration) error { return ErrUnsupported }
