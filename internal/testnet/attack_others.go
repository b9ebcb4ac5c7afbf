//go:build !linux

package testnet

import (
	"net"
	"testing"
	"time"
)

// Attacker forges packets from inside the Router namespace (Linux only).
type Attacker struct{}

// FrameSender sends frames out of a Router interface (Linux only).
type FrameSender struct{}

// Attacker skips the test.
func (n *Net) Attacker(t testing.TB) *Attacker { skip(t); return nil }

// Sent returns 0.
func (a *Attacker) Sent() uint64 { return 0 }

// Send returns ErrUnsupported.
func (a *Attacker) Send(pkt []byte) error { return ErrUnsupported }

// Frames skips the test.
func (a *Attacker) Frames(t testing.TB, ifname string) *FrameSender { skip(t); return nil }

// Send returns ErrUnsupported.
func (f *FrameSender) Send(dst net.HardwareAddr, pkt []byte) error { return ErrUnsupported }

// Delay skips the test.
func (n *Net) Delay(t testing.TB, d time.Duration) string { skip(t); return "" }
