package inventory

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Owner is the process that holds a socket open.
type Owner struct {
	PID  int
	Comm string // /proc/PID/comm
	// Unit is the systemd unit from /proc/PID/cgroup: …/system.slice/foo.service
	// gives "foo.service", user units and scopes likewise; "" when none.
	Unit string
	// Container is the container id from the cgroup path (12 hex digits for
	// docker, containerd, CRI-O and podman), "" when the process is in none.
	Container string
	// ContainerName, PodNamespace and PodName are the container's name and
	// pod as the container runtime reports them; "" when unknown.
	ContainerName, PodNamespace, PodName string
}

// Owners maps socket inodes to the processes that hold them. It reads
// /proc/*/fd only for the inodes it is asked about and remembers nothing:
// its caller keeps the answers (the engine's owner cache, the one cache of
// owners). It is safe for concurrent use.
type Owners struct {
	procRoot string

	mu    sync.Mutex
	walks int // /proc walks so far, for tests
}

// NewOwners returns an Owners reading procRoot (normally "/proc").
func NewOwners(procRoot string) *Owners {
	if procRoot == "" {
		procRoot = "/proc"
	}
	return &Owners{procRoot: procRoot}
}

// Each walks /proc once for every inode asked, then calls fn with every
// inode a process holds and its owner: the lowest pid holding it, or with
// netns not 0 (the namespace the sockets live in) the lowest pid inside
// that namespace, whose processes' fds are read first, so that resolving a
// container's sockets need not read every fd on the host. Inodes nobody
// holds (TIME_WAIT, orphans, unreadable /proc entries) and inode 0 get no
// call. It keeps no map of answers: a caller that keeps them in its own
// form (ghostd scan --all: 200 000 of them) does not hold them twice. fn
// must not call o.
func (o *Owners) Each(netns uint64, inodes []uint32, fn func(ino uint32, ow Owner)) {
	want := make(map[uint32]struct{}, len(inodes))
	for _, ino := range inodes {
		if ino != 0 {
			want[ino] = struct{}{}
		}
	}
	if len(want) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.walks++
	procs := make(map[int]Owner)
	for ino, h := range o.walk(netns, want) {
		ow, ok := procs[h.pid]
		if !ok {
			ow = o.describe(h.pid)
			procs[h.pid] = ow
		}
		fn(ino, ow)
	}
}

// holder is where a walk found a socket: the lowest pid holding it and the fd.
type holder struct {
	pid, fd int
}

// describe reads a process's comm and cgroup; unreadable parts stay empty.
func (o *Owners) describe(pid int) Owner {
	ow := Owner{PID: pid}
	dir := o.procRoot + "/" + strconv.Itoa(pid)
	if b, err := os.ReadFile(dir + "/comm"); err == nil {
		ow.Comm = string(bytes.TrimRight(b, "\n"))
	}
	if b, err := os.ReadFile(dir + "/cgroup"); err == nil {
		ow.Unit, ow.Container = ParseCgroup(b)
	}
	return ow
}

// parseSocketLink returns N from a "socket:[N]" fd link target.
func parseSocketLink(b []byte) (uint32, bool) {
	const prefix = "socket:["
	if len(b) < len(prefix)+2 || string(b[:len(prefix)]) != prefix || b[len(b)-1] != ']' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[len(prefix):len(b)-1]), 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

// ParseCgroup extracts the systemd unit and the container id from the contents
// of /proc/PID/cgroup. The cgroup v2 line ("0::…") is preferred, then the v1
// name=systemd hierarchy, then any other hierarchy.
func ParseCgroup(b []byte) (unit, container string) {
	var v2, systemd string
	var rest []string
	for line := range strings.SplitSeq(string(b), "\n") {
		// hierarchy-ID:controller-list:cgroup-path; the path may contain ':'.
		id, after, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		ctrl, path, ok := strings.Cut(after, ":")
		if !ok {
			continue
		}
		switch {
		case id == "0" && ctrl == "":
			v2 = path
		case ctrl == "name=systemd":
			systemd = path
		default:
			rest = append(rest, path)
		}
	}
	for _, p := range append([]string{v2, systemd}, rest...) {
		if p == "" {
			continue
		}
		if unit == "" {
			unit = UnitFromCgroup(p)
		}
		if container == "" {
			container = ContainerFromCgroup(p)
		}
		if unit != "" && container != "" {
			break
		}
	}
	return unit, container
}

// UnitFromCgroup returns the systemd unit a cgroup path belongs to: its
// deepest ".service" or ".scope" component (user units included), except a
// user manager's own init.scope, which belongs to its user@UID.service;
// "" when there is none.
func UnitFromCgroup(path string) string {
	parts := strings.Split(path, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		if p == "init.scope" && i > 1 {
			continue
		}
		if s, ok := strings.CutSuffix(p, ".service"); ok && s != "" {
			return p
		}
		if s, ok := strings.CutSuffix(p, ".scope"); ok && s != "" {
			return p
		}
	}
	return ""
}

// Container runtimes name their systemd scopes PREFIX<64 hex>.scope.
var scopePrefixes = []string{"docker-", "cri-containerd-", "crio-", "libpod-", "containerd-", "podman-"}

// ContainerFromCgroup returns the container id in a cgroup path, shortened to
// 12 hex digits as docker prints it: systemd-driver scopes
// (docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope,
// libpod-<id>.scope), cgroupfs-driver paths (/docker/<id>,
// /kubepods/burstable/pod<uid>/<id>, any 64-hex component), LXC
// (lxc.payload.NAME) and systemd-nspawn machines (machine-NAME.scope,
// systemd-nspawn@NAME.service) by name. Runtime helpers (conmon) are not
// containers. It returns "" when the path names none.
func ContainerFromCgroup(path string) string {
	parts := strings.Split(path, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		if isHex64(p) {
			return p[:12]
		}
		if s, ok := strings.CutSuffix(p, ".scope"); ok {
			if strings.Contains(s, "conmon") {
				continue
			}
			for _, pre := range scopePrefixes {
				if id, ok := strings.CutPrefix(s, pre); ok && isHex64(id) {
					return id[:12]
				}
			}
			if name, ok := strings.CutPrefix(s, "machine-"); ok && name != "" {
				return unescapeUnit(name)
			}
		}
		if name, ok := strings.CutPrefix(p, "lxc.payload."); ok && name != "" {
			return name
		}
		if s, ok := strings.CutSuffix(p, ".service"); ok {
			if name, ok := strings.CutPrefix(s, "systemd-nspawn@"); ok && name != "" {
				return unescapeUnit(name)
			}
		}
	}
	return ""
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// unescapeUnit undoes systemd's \xNN escaping in unit names ("a\x2db" → "a-b").
func unescapeUnit(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if n, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
