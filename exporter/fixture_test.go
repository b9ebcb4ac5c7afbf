package exporter

import (
	"time"
)

var (
	t0      = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	testBld = BuildInfo{Version: "1.2.3", Revision: "abc123", GoVersion: "go1.26.8"}
)

func ptr[T any](v T) *T { return &v }

// fixtureSnapshot is a scan of two namespaces, one of them failed, with two
// ghosts, a healthy suspect and a CLOSE_WAIT leak.
func fixtureSnapshot() *Snapshot {
	return &Snapshot{
		Doc: Document{
			ScannedAt: t0,
			Namespaces: []NamespaceStatus{
				{Netns: "host", NetnsInode: 4026531840, Sockets: 12, Kind: "host", Duration: 3 * time.Millisecond},
				{Netns: "blue", NetnsInode: 4026532500, Sockets: 3, Kind: "named", Duration: 1500 * time.Microsecond},
				{Netns: "pid-nginx-77", NetnsInode: 4026532600, Kind: "process", Error: "open /proc/77/ns/net: no such file or directory"},
			},
			Sessions: []Session{
				{
					Netns: "host", NetnsInode: 4026531840, Family: "inet", State: "ESTABLISHED",
					Local: "192.0.2.1:5432", Remote: "198.51.100.7:40000", Cookie: 11, Inode: 1001,
					PID: 4242, Comm: "postgres", Unit: "postgresql.service", IdleSeconds: 412.5,
					Reasons: []string{"idle"}, Verdict: "silent", ProbesSent: 3, Ghost: true, GhostSeconds: 120,
					ProbeMode:             "in_window",
					KernelDeadlineSeconds: ptr(7093.0), KernelDeadlineBasis: "keepalive", KernelDeadlineLowerBound: true,
				},
				{
					Netns: "host", NetnsInode: 4026531840, Family: "inet6", State: "ESTABLISHED",
					Local: "[2001:db8::1]:443", Remote: "[2001:db8::2]:51234", Cookie: 12, Inode: 1002,
					PID: 99, Comm: "<script>alert(1)</script>", IdleSeconds: 7300,
					Reasons: []string{"idle", "retransmitting"}, Verdict: "reset", ProbesSent: 1, Replies: 1,
					RTTSeconds: ptr(0.0004), Ghost: true, GhostSeconds: 30,
				},
				{
					Netns: "host", NetnsInode: 4026531840, Family: "inet", State: "ESTABLISHED",
					Local: "192.0.2.1:22", Remote: "203.0.113.9:50000", Cookie: 13, Inode: 1003,
					PID: 1, Comm: "sshd", Unit: "ssh.service", IdleSeconds: 900,
					Reasons: []string{"idle"}, Verdict: "alive", ProbesSent: 1, Replies: 1, RTTSeconds: ptr(0.0002),
					KernelDeadlineBasis: "none",
				},
				{
					Netns: "blue", NetnsInode: 4026532500, Family: "inet", State: "CLOSE_WAIT",
					Local: "192.0.2.5:8080", Remote: "192.0.2.6:33333", Cookie: 21, Inode: 2001,
					PID: 500, Comm: "leaky", Container: "0123456789ab", IdleSeconds: 3600,
					Reasons: []string{"close_wait"}, Verdict: "unprobed",
				},
			},
		},
		Sockets: []SocketCount{
			{Netns: "host", Family: "inet", State: "ESTABLISHED", Count: 8},
			{Netns: "host", Family: "inet", State: "LISTEN", Count: 3},
			{Netns: "host", Family: "inet6", State: "ESTABLISHED", Count: 1},
			{Netns: "blue", Family: "inet", State: "CLOSE_WAIT", Count: 1},
			{Netns: "blue", Family: "inet", State: "LISTEN", Count: 2},
		},
		ScanDuration: 180 * time.Millisecond,
		ProbeMode:    "in_window",
	}
}
