package inventory

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	hexA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	hexB = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func TestFromCgroupPath(t *testing.T) {
	tests := []struct {
		path, unit, container string
	}{
		{"/", "", ""},
		{"", "", ""},
		{"/init.scope", "init.scope", ""},
		{"/system.slice/postgresql.service", "postgresql.service", ""},
		{"/system.slice/system-postgresql.slice/postgresql@15-main.service", "postgresql@15-main.service", ""},
		{"/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", "foo.service", ""},
		{"/user.slice/user-1000.slice/session-3.scope", "session-3.scope", ""},
		{"/user.slice/user-1000.slice/user@1000.service/init.scope", "user@1000.service", ""},
		// Docker, systemd and cgroupfs drivers.
		{"/system.slice/docker-" + hexA + ".scope", "docker-" + hexA + ".scope", "0123456789ab"},
		{"/docker/" + hexA, "", "0123456789ab"},
		// containerd / CRI-O under Kubernetes, systemd driver.
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f3c6d4e_1111.slice/cri-containerd-" + hexB + ".scope",
			"cri-containerd-" + hexB + ".scope", "fedcba987654"},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f3c.slice/crio-" + hexA + ".scope",
			"crio-" + hexA + ".scope", "0123456789ab"},
		// CRI-O's conmon runs beside the container: not the container.
		{"/machine.slice/crio-conmon-" + hexA + ".scope", "crio-conmon-" + hexA + ".scope", ""},
		// Kubernetes, cgroupfs driver.
		{"/kubepods/besteffort/pod0f3c6d4e-1111-2222-3333-444455556666/" + hexB, "", "fedcba987654"},
		// Podman.
		{"/machine.slice/libpod-" + hexA + ".scope/container", "libpod-" + hexA + ".scope", "0123456789ab"},
		{"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + hexB + ".scope", "libpod-" + hexB + ".scope", "fedcba987654"},
		{"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-" + hexB + ".scope", "libpod-conmon-" + hexB + ".scope", ""},
		// containerd without Kubernetes (ctr, namespace "default").
		{"/default/" + hexA, "", "0123456789ab"},
		// Named containers.
		{"/lxc.payload.web1", "", "web1"},
		{"/machine.slice/systemd-nspawn@deb12.service/payload/system.slice/nginx.service", "nginx.service", "deb12"},
		{"/machine.slice/machine-deb\\x2dtest.scope", "machine-deb\\x2dtest.scope", "deb-test"},
		// Not ids: wrong length, upper case.
		{"/docker/" + hexA[:63], "", ""},
		{"/docker/0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF", "", ""},
		{"/system.slice/.service", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got := [2]string{UnitFromCgroup(tt.path), ContainerFromCgroup(tt.path)}
			if diff := cmp.Diff([2]string{tt.unit, tt.container}, got); diff != "" {
				t.Errorf("unit, container for %q (-want +got):\n%s", tt.path, diff)
			}
		})
	}
}

func TestParseCgroup(t *testing.T) {
	tests := []struct {
		name, in, unit, container string
	}{
		{"empty", "", "", ""},
		{"garbage", "no colons here\n::\n", "", ""},
		{"v2", "0::/system.slice/ssh.service\n", "ssh.service", ""},
		{"v2 path with colon", "0::/system.slice/a:b.service\n", "a:b.service", ""},
		{"hybrid: v2 root, systemd in name=systemd",
			"12:pids:/\n1:name=systemd:/system.slice/cron.service\n0::/\n", "cron.service", ""},
		{"v1 kubepods",
			"12:memory:/kubepods/besteffort/pod1/" + hexB + "\n1:name=systemd:/kubepods/besteffort/pod1/" + hexB + "\n0::/\n", "", "fedcba987654"},
		{"v1 docker in a controller only",
			"4:memory:/docker/" + hexA + "\n1:name=systemd:/system.slice/docker.service\n", "docker.service", "0123456789ab"},
		{"v2 docker",
			"0::/system.slice/docker-" + hexA + ".scope\n", "docker-" + hexA + ".scope", "0123456789ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, c := ParseCgroup([]byte(tt.in))
			if diff := cmp.Diff([2]string{tt.unit, tt.container}, [2]string{u, c}); diff != "" {
				t.Errorf("ParseCgroup (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSocketLink(t *testing.T) {
	tests := []struct {
		in   string
		ino  uint32
		want bool
	}{
		{"socket:[12345]", 12345, true},
		{"socket:[4294967295]", 4294967295, true},
		{"socket:[4294967296]", 0, false},
		{"socket:[]", 0, false},
		{"socket:[12", 0, false},
		{"pipe:[12]", 0, false},
		{"/dev/null", 0, false},
		{"anon_inode:[eventpoll]", 0, false},
	}
	for _, tt := range tests {
		ino, ok := parseSocketLink([]byte(tt.in))
		if ino != tt.ino || ok != tt.want {
			t.Errorf("parseSocketLink(%q) = %d, %v; want %d, %v", tt.in, ino, ok, tt.ino, tt.want)
		}
	}
}

func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte("0::/system.slice/docker-" + hexA + ".scope\n"))
	f.Add([]byte("1:name=systemd:/machine.slice/machine-a\\x2.scope\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		unit, c := ParseCgroup(b)
		if len(unit) > len(b) || len(c) > len(b) {
			t.Fatalf("ParseCgroup invented text: %q, %q from %d bytes", unit, c, len(b))
		}
		// Both are single path components of one line.
		if strings.ContainsAny(unit, "/\n") || (unit != "" && !strings.Contains(string(b), unit)) {
			t.Fatalf("unit %q is not a path component of %q", unit, b)
		}
		if strings.Contains(c, "/") || (isHex12(c) && !strings.Contains(string(b), c)) {
			t.Fatalf("container %q is not from %q", c, b)
		}
	})
}

func isHex12(s string) bool { return len(s) == 12 && isHex64(s+s+s+s+s[:4]) }

// TestHolderBetter: the holder a walk of /proc would report first wins:
// inside the namespace asked over outside, then the lowest pid, then the
// lowest fd; anyone over nobody.
func TestHolderBetter(t *testing.T) {
	for _, tt := range []struct {
		h, cur holder
		want   bool
	}{
		{holder{pid: 9, fd: 3}, holder{}, true},
		{holder{pid: 9, fd: 3, inside: true}, holder{pid: 2, fd: 1}, true},
		{holder{pid: 2, fd: 1}, holder{pid: 9, fd: 3, inside: true}, false},
		{holder{pid: 2, fd: 7}, holder{pid: 9, fd: 3}, true},
		{holder{pid: 9, fd: 3}, holder{pid: 2, fd: 7}, false},
		{holder{pid: 9, fd: 3}, holder{pid: 9, fd: 4}, true},
		{holder{pid: 9, fd: 4}, holder{pid: 9, fd: 3}, false},
		{holder{pid: 9, fd: 3}, holder{pid: 9, fd: 3}, false},
	} {
		if got := tt.h.better(tt.cur); got != tt.want {
			t.Errorf("%+v better than %+v = %v, want %v", tt.h, tt.cur, got, tt.want)
		}
	}
}
