//go:build !linux

package kernelhz

import "errors"

// HZ returns the running kernel's CONFIG_HZ; only Linux has one.
func HZ() (int, error) { return 0, errors.New("kernelhz: not Linux") }
