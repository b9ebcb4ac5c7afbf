//go:build !linux

package probe

// openGuard fails: nftables is Linux's.
func openGuard(string) (resetGuard, error) { return nil, ErrGuardUnsupported }
