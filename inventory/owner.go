package inventory

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/ghostd/ghostd/internal/closer"
	"github.com/ghostd/ghostd/inventory/bpfowners"
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
// /proc/*/fd, or lists every process's socket fds in one pass of a BPF
// iterator once UseIterator succeeded, only for the inodes it is asked
// about, and remembers nothing: its caller keeps the answers (the engine's
// owner cache, the one cache of owners). It is safe for concurrent use.
type Owners struct {
	procRoot string

	mu      sync.Mutex
	walks   int // lookups so far, for tests
	passes  int // lookups the iterator served, for tests
	iter    *bpfowners.Lister
	iterMin int          // iterMinWanted; tests lower it
	log     *slog.Logger // says when the iterator fails
}

// iterMinWanted is how many sockets of one namespace a lookup must ask for
// before the iterator serves it rather than /proc: the iterator reads every
// fd on the host, a walk of /proc that namespace's processes first and
// stops once it found every socket, which for a few sockets of one
// container is cheaper.
const iterMinWanted = 256

// NewOwners returns an Owners reading procRoot (normally "/proc").
func NewOwners(procRoot string) *Owners {
	if procRoot == "" {
		procRoot = "/proc"
	}
	return &Owners{procRoot: procRoot, iterMin: iterMinWanted}
}

// UseIterator makes Each find holders with the BPF task_file iterator
// (package bpfowners): one pass in the kernel instead of a readlink per fd,
// for lookups of many sockets or of several namespaces. When it cannot load
// it returns why (wrapping bpfowners.ErrUnavailable) and Each keeps reading
// /proc. Should a pass fail later, Each says so once on log and reads /proc
// from then on.
func (o *Owners) UseIterator(log *slog.Logger) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.procRoot != "/proc" {
		// The iterator reports pids as the initial pid namespace numbers them.
		return fmt.Errorf("%w: owners are read from %s, not /proc", bpfowners.ErrUnavailable, o.procRoot)
	}
	if o.iter != nil {
		return nil
	}
	l, err := bpfowners.New()
	if err != nil {
		return err
	}
	o.iter, o.log = l, log
	return nil
}

// Close unloads the iterator, if UseIterator loaded it.
func (o *Owners) Close() error {
	return closer.Close(&o.mu, &o.iter, (*bpfowners.Lister).Close)
}

// Each finds, in one walk of /proc or one pass of the iterator, every inode
// asked, then calls fn with every inode a process holds and its owner: the
// lowest pid holding it, or with netns not 0 (the namespace the sockets
// live in) the lowest pid inside that namespace, whose processes' fds a
// walk reads first, so that resolving a container's sockets need not read
// every fd on the host. Inodes nobody holds (TIME_WAIT, orphans,
// unreadable /proc entries) and inode 0 get no call. A process's comm and
// cgroup are read once per call, however many sockets it holds. It keeps
// no map of answers: a caller that keeps them in its own form (ghostd scan
// --all: 200 000 of them) does not hold them twice. fn must not call o.
func (o *Owners) Each(netns uint64, inodes []uint32, fn func(ino uint32, ow Owner)) {
	found := make(map[uint32]holder, len(inodes))
	for _, ino := range inodes {
		if ino != 0 {
			found[ino] = holder{}
		}
	}
	if len(found) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.walks++
	if !o.iterate(netns, found) {
		o.walk(netns, found)
	}
	procs := make(map[int]Owner)
	for ino, h := range found {
		if h.pid == 0 {
			continue
		}
		ow, ok := procs[h.pid]
		if !ok {
			ow = o.describe(h.pid)
			procs[h.pid] = ow
		}
		fn(ino, ow)
	}
}

// holder is where a socket was found: the lowest pid holding it (0: not
// found) and the fd, and whether the process is in the namespace asked.
type holder struct {
	pid, fd int
	inside  bool
}

// better reports whether h is a better holder to report than cur: one
// inside the namespace asked over one outside, then the lowest pid, then
// the lowest fd (the first a walk of /proc finds).
func (h holder) better(cur holder) bool {
	switch {
	case cur.pid == 0:
		return true
	case h.inside != cur.inside:
		return h.inside
	case h.pid != cur.pid:
		return h.pid < cur.pid
	}
	return h.fd < cur.fd
}

// iterate fills found with one pass of the iterator, when it is loaded and
// the lookup is one it serves (iterMinWanted), and reports whether it did.
// Processes come in ascending pid order, so the pass stops, as a walk of
// /proc does, once every inode has a holder no later process can beat: any
// holder without a namespace hint, one inside the namespace with it. A
// failed pass unloads the iterator, says so once, and leaves found as it
// was.
func (o *Owners) iterate(netns uint64, found map[uint32]holder) bool {
	if o.iter == nil || (netns != 0 && len(found) < o.iterMin) {
		return false
	}
	settled := func(h holder) bool { return h.pid != 0 && (netns == 0 || h.inside) }
	unsettled := len(found)
	err := o.iter.Each(context.Background(), func(f bpfowners.FD) bool {
		if f.Inode > math.MaxUint32 {
			return true
		}
		ino := uint32(f.Inode)
		cur, wanted := found[ino]
		if !wanted {
			return true
		}
		if h := (holder{pid: f.PID, fd: f.FD, inside: netns != 0 && f.Netns == netns}); h.better(cur) {
			found[ino] = h
			if settled(h) && !settled(cur) {
				unsettled--
			}
		}
		return unsettled > 0
	})
	if err == nil {
		o.passes++
		return true
	}
	if o.log != nil {
		o.log.Warn("owners: reading /proc/PID/fd from now on: the BPF iterator failed", "err", err)
	}
	_ = o.iter.Close()
	o.iter = nil
	for ino := range found {
		found[ino] = holder{}
	}
	return false
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

// cgroupLine is one line of /proc/PID/cgroup:
// hierarchy-ID:controller-list:cgroup-path.
type cgroupLine struct{ id, ctrl, path string }

// v2 is whether the line is the cgroup v2 hierarchy's ("0::…").
func (l cgroupLine) v2() bool { return l.id == "0" && l.ctrl == "" }

// cgroupLines yields the well-formed lines of a /proc/PID/cgroup file; a
// path may contain ':'.
func cgroupLines(b []byte) iter.Seq[cgroupLine] {
	return func(yield func(cgroupLine) bool) {
		for line := range strings.SplitSeq(string(b), "\n") {
			id, after, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			ctrl, path, ok := strings.Cut(after, ":")
			if ok && !yield(cgroupLine{id, ctrl, path}) {
				return
			}
		}
	}
}

// ParseCgroup extracts the systemd unit and the container id from the contents
// of /proc/PID/cgroup. The cgroup v2 line ("0::…") is preferred, then the v1
// name=systemd hierarchy, then any other hierarchy.
func ParseCgroup(b []byte) (unit, container string) {
	var v2, systemd string
	var rest []string
	for l := range cgroupLines(b) {
		switch {
		case l.v2():
			v2 = l.path
		case l.ctrl == "name=systemd":
			systemd = l.path
		default:
			rest = append(rest, l.path)
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
