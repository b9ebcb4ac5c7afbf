//go:build !linux

package app

// CurrentCapabilities is unknown off Linux: everything is assumed present.
func CurrentCapabilities() Capabilities { return Capabilities{} }
