//go:build !linux

package testnet

import (
	"testing"
	"time"
)

// SetIdleTimeout needs Linux; it skips the test.
func (n *Net) SetIdleTimeout(t testing.TB, d time.Duration) { skip(t) }
