package systemd

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a unixgram socket like systemd's notify socket and points
// $NOTIFY_SOCKET at it.
func listen(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", addr)
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	for _, addr := range []string{
		filepath.Join(t.TempDir(), "notify"),
		"@gd-sd-notify-test-" + strconv.Itoa(os.Getpid()),
	} {
		t.Run(addr, func(t *testing.T) {
			conn := listen(t, addr)
			for _, tt := range []struct {
				send func() error
				want string
			}{
				{Ready, "READY=1"},
				{Watchdog, "WATCHDOG=1"},
				{Stopping, "STOPPING=1"},
				{func() error { return Status("scanning 3 namespaces") }, "STATUS=scanning 3 namespaces"},
				{func() error { return Notify("READY=1\nSTATUS=ok") }, "READY=1\nSTATUS=ok"},
			} {
				if err := tt.send(); err != nil {
					t.Fatal(err)
				}
				if got := receive(t, conn); got != tt.want {
					t.Errorf("got %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestReloading(t *testing.T) {
	conn := listen(t, filepath.Join(t.TempDir(), "notify"))
	before := monotonicUsec()
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	got := receive(t, conn)
	first, rest, _ := strings.Cut(got, "\n")
	if first != "RELOADING=1" || !strings.HasPrefix(rest, "MONOTONIC_USEC=") {
		t.Fatalf("got %q, want RELOADING=1 and MONOTONIC_USEC", got)
	}
	us, err := strconv.ParseInt(strings.TrimPrefix(rest, "MONOTONIC_USEC="), 10, 64)
	if err != nil || us < before || us > monotonicUsec() {
		t.Errorf("MONOTONIC_USEC %q not between %d and now (%v)", rest, before, err)
	}
}

func TestNotifyUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Ready(); err != nil {
		t.Errorf("Ready() without NOTIFY_SOCKET = %v, want nil", err)
	}
}

func TestNotifyErrors(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "relative/path")
	if err := Ready(); err == nil || !strings.Contains(err.Error(), "unsupported NOTIFY_SOCKET") {
		t.Errorf("relative path: err = %v", err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent"))
	if err := Ready(); err == nil || !strings.HasPrefix(err.Error(), "systemd: notify: ") {
		t.Errorf("absent socket: err = %v", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	const self = 4242
	tests := []struct {
		usec, pid string
		want      time.Duration
		ok        bool
	}{
		{"", "", 0, false},
		{"60000000", "", time.Minute, true},
		{"60000000", "4242", time.Minute, true},
		{"60000000", "1", 0, false}, // meant for another process
		{"60000000", "x", 0, false},
		{"0", "", 0, false},
		{"-5", "", 0, false},
		{"abc", "", 0, false},
		{"99999999999999999999", "", 0, false},
	}
	for _, tt := range tests {
		got, ok := watchdogInterval(tt.usec, tt.pid, self)
		if got != tt.want || ok != tt.ok {
			t.Errorf("watchdogInterval(%q, %q) = %v, %v; want %v, %v", tt.usec, tt.pid, got, ok, tt.want, tt.ok)
		}
	}
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if got, ok := WatchdogInterval(); got != 30*time.Second || !ok {
		t.Errorf("WatchdogInterval() = %v, %v; want 30s, true", got, ok)
	}
}
