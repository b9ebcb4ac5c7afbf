package systemd

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

func notify(addr, state string) error {
	// "@name" is an abstract socket; Go's net package spells it the same way.
	if addr[0] != '/' && addr[0] != '@' {
		return fmt.Errorf("systemd: notify: unsupported NOTIFY_SOCKET %q", addr)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("systemd: notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("systemd: notify %q: %w", state, err)
	}
	return nil
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}
