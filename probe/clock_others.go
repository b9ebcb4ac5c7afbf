//go:build !linux

package probe

import "fmt"

// kernelHZ returns the running kernel's CONFIG_HZ; only Linux has one.
func kernelHZ() (int, error) {
	return 0, fmt.Errorf("kernel HZ: %w", errUnsupported)
}
