//go:build !linux

package systemd

func notify(addr, state string) error { return ErrUnsupported }

func monotonicUsec() int64 { return 0 }
