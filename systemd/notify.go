package systemd

import (
	"errors"
	"os"
	"strconv"
	"time"
)

// ErrUnsupported is returned where the platform has no sd_notify.
var ErrUnsupported = errors.New("systemd: not supported on this platform")

// Notify sends state (newline-separated VAR=value assignments, see
// sd_notify(3)) to the service manager over $NOTIFY_SOCKET. It does nothing
// and returns nil when the variable is unset, so ghostd runs the same way
// outside systemd.
func Notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	return notify(addr, state)
}

// Ready tells systemd that start-up finished (Type=notify).
func Ready() error { return Notify("READY=1") }

// Stopping tells systemd that ghostd is shutting down.
func Stopping() error { return Notify("STOPPING=1") }

// Reloading tells systemd that ghostd is reloading its configuration; send
// Ready when the reload is done. MONOTONIC_USEC lets Type=notify-reload
// (systemd 253+) match the reload to the request.
func Reloading() error {
	return Notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10))
}

// Status sets the one-line status that `systemctl status` shows.
func Status(s string) error { return Notify("STATUS=" + s) }

// Watchdog pets the watchdog (WatchdogSec=).
func Watchdog() error { return Notify("WATCHDOG=1") }

// WatchdogInterval returns how often systemd expects Watchdog: the
// watchdog timeout from $WATCHDOG_USEC, and false when no watchdog is set
// or $WATCHDOG_PID names another process. Pet it at half this interval.
func WatchdogInterval() (time.Duration, bool) {
	return watchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
}

func watchdogInterval(usec, pid string, self int) (time.Duration, bool) {
	if usec == "" {
		return 0, false
	}
	us, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || us == 0 || us > uint64(1<<63-1)/uint64(time.Microsecond) {
		return 0, false
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p != self {
			return 0, false
		}
	}
	return time.Duration(us) * time.Microsecond, true
}
