package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// ErrNamespaceGone reports that a network namespace disappeared between
// listing and use: its holder exited or `ip netns del` removed it.
var ErrNamespaceGone = errors.New("inventory: network namespace is gone")

// ErrUnknownNamespace reports a socket whose namespace the last scan did not list.
var ErrUnknownNamespace = errors.New("inventory: unknown network namespace")

// Default locations ListNamespaces and the Scanner read.
const (
	DefaultProcRoot = "/proc"
	DefaultRunNetns = "/run/netns"
)

// ListNamespaces finds every network namespace on the host: the host's own
// (procRoot/1/ns/net, named "host"), every entry of runNetns (KindNamed, named
// after the file) and every anonymous namespace a process holds
// (procRoot/PID/ns/net, KindProcess), deduplicated by nsfs inode: the host
// wins over all, a named entry over a process. A process-held namespace is
// named after its lowest holding pid: the container id from that process's
// cgroup, else "pid-COMM-PID". Names are unique: a clash gets "-INODE"
// appended.
//
// Processes that exit while being read are skipped. Permission problems are
// returned as one error per kind (host, named, process) joined together, next
// to every namespace that could be read. When procRoot/1/ns/net is unreadable
// (not root), the caller's own namespace (procRoot/self/ns/net) stands in as
// "host".
func ListNamespaces(procRoot, runNetns string) ([]Namespace, error) {
	return newLister(procRoot, runNetns).list()
}

// nsLister lists namespaces; inode is injectable so that tests can run over a
// fake procfs (symlinks cannot be nsfs files).
type nsLister struct {
	procRoot, runNetns string
	cgroupRoot         string // where the cgroup hierarchies are mounted
	inode              func(path string) (uint64, error)
}

func newLister(procRoot, runNetns string) nsLister {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	if runNetns == "" {
		runNetns = DefaultRunNetns
	}
	return nsLister{procRoot: procRoot, runNetns: runNetns, cgroupRoot: DefaultCgroupRoot, inode: nsInode}
}

func (l nsLister) list() ([]Namespace, error) {
	var (
		out   []Namespace
		errs  []error
		seen  = make(map[uint64]bool)
		names = make(map[string]bool)
	)
	add := func(ns Namespace) {
		if seen[ns.Inode] {
			return
		}
		seen[ns.Inode] = true
		if names[ns.Name] {
			ns.Name += "-" + strconv.FormatUint(ns.Inode, 10)
		}
		names[ns.Name] = true
		out = append(out, ns)
	}

	// The host.
	hostPath := l.procRoot + "/1/ns/net"
	ino, err := l.inode(hostPath)
	hostDenied := err != nil && errors.Is(err, fs.ErrPermission)
	if hostDenied {
		errs = append(errs, fmt.Errorf("inventory: list host namespace: %w", err))
		hostPath = l.procRoot + "/self/ns/net"
		ino, err = l.inode(hostPath)
	}
	addHost := func() {}
	if err == nil {
		host := Namespace{Inode: ino, Name: "host", Path: hostPath, Kind: KindHost}
		if hostDenied {
			// Our own namespace stands in for PID 1's, which we cannot read.
			// It may be a named one (ghostd run under `ip netns exec`): let
			// its /run/netns name win, and call it host only otherwise.
			addHost = func() { add(host) }
		} else {
			add(host)
		}
	} else if !errors.Is(err, fs.ErrPermission) && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("inventory: list host namespace: %w", err))
	}

	// Named ones: ip netns add NAME bind-mounts the namespace on runNetns/NAME.
	ents, err := os.ReadDir(l.runNetns)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("inventory: list named namespaces: %w", err))
	}
	var namedPerm error
	for _, ent := range ents { // sorted by name
		p := l.runNetns + "/" + ent.Name()
		ino, err := l.inode(p)
		if err != nil {
			// Not a namespace (a stale file after a failed `ip netns del`), or gone.
			if errors.Is(err, fs.ErrPermission) && namedPerm == nil {
				namedPerm = err
			}
			continue
		}
		add(Namespace{Inode: ino, Name: ent.Name(), Path: p, Kind: KindNamed})
	}
	if namedPerm != nil {
		errs = append(errs, fmt.Errorf("inventory: list named namespaces: %w", namedPerm))
	}
	addHost()

	// Anonymous ones held by processes, named after the lowest pid holding each.
	pids, err := listPIDs(l.procRoot)
	if err != nil {
		errs = append(errs, fmt.Errorf("inventory: list process namespaces: %w", err))
	}
	var procPerm error
	denied := 0
	for _, pid := range pids {
		dir := l.procRoot + "/" + strconv.Itoa(pid)
		ino, err := l.inode(dir + "/ns/net")
		if err != nil {
			if errors.Is(err, fs.ErrPermission) && !(pid == 1 && hostDenied) {
				denied++
				if procPerm == nil {
					procPerm = err
				}
			}
			continue // exited, zombie, kernel oddity
		}
		if seen[ino] {
			continue
		}
		add(Namespace{Inode: ino, Name: l.processNamespaceName(dir, pid), Path: dir + "/ns/net", Kind: KindProcess, PID: pid})
	}
	if procPerm != nil {
		errs = append(errs, fmt.Errorf("inventory: list process namespaces: %d of %d processes unreadable: %w", denied, len(pids), procPerm))
	}
	return out, errors.Join(errs...)
}

// DefaultCgroupRoot is where the cgroup hierarchies are mounted.
const DefaultCgroupRoot = "/sys/fs/cgroup"

// processNamespaceName derives a user-facing name for a namespace held by pid:
// its container id, else "pid-COMM-PID". A container id counts only when
// the cgroup it comes from is root's: a user with a delegated cgroup subtree
// (systemd user slices) can name a cgroup of its own like a container's, and
// would otherwise give its namespace a container's name.
func (l nsLister) processNamespaceName(dir string, pid int) string {
	if b, err := os.ReadFile(dir + "/cgroup"); err == nil {
		if c := l.trustedContainer(b); c != "" {
			return c
		}
	}
	comm := "unknown"
	if b, err := os.ReadFile(dir + "/comm"); err == nil {
		if c := strings.TrimSpace(string(b)); c != "" {
			comm = c
		}
	}
	return "pid-" + comm + "-" + strconv.Itoa(pid)
}

// trustedContainer returns the container id of a /proc/PID/cgroup file whose
// cgroup directory root owns. A directory that cannot be found (cgroups
// mounted elsewhere, a cgroup namespace) cannot be checked, and the id is
// taken as it is.
func (l nsLister) trustedContainer(b []byte) string {
	_, c := ParseCgroup(b)
	if c == "" {
		return ""
	}
	for cl := range cgroupLines(b) {
		if ContainerFromCgroup(cl.path) != c {
			continue
		}
		dir := l.cgroupRoot + cl.path // cgroup v2: one hierarchy
		if !cl.v2() {
			dir = l.cgroupRoot + "/" + strings.TrimPrefix(cl.ctrl, "name=") + cl.path
		}
		if uid, ok := ownerUID(dir); ok && uid != 0 {
			return ""
		}
	}
	return c
}

// listPIDs returns the numeric entries of procRoot in ascending order.
func listPIDs(procRoot string) ([]int, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if n == "" || n[0] < '1' || n[0] > '9' {
			continue
		}
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// parseNsLink returns N from a "net:[N]" namespace link target.
func parseNsLink(s string) (uint64, error) {
	v, ok := strings.CutPrefix(s, "net:[")
	if ok {
		v, ok = strings.CutSuffix(v, "]")
	}
	if !ok {
		return 0, fmt.Errorf("inventory: %q is not a network namespace", s)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("inventory: %q is not a network namespace", s)
	}
	return n, nil
}

// SelectNetns parses a --netns value into a namespace filter: "all" (or "")
// selects every namespace; a path (anything starting with "/", such as
// /proc/PID/ns/net or /run/netns/NAME) selects the namespace with that path's
// inode, resolved now; "net:[N]" selects inode N; any other value selects the
// namespace with that name ("host", a /run/netns name, a pod's
// "<namespace>/<pod>", a derived container id or pid-COMM-PID name; a full
// 64-hex container id matches its 12-hex short form); a value with *, ? or [
// is a path.Match pattern over names ("cni-*", "kube-system/*").
func SelectNetns(spec string) (func(Namespace) bool, error) {
	return selectNetns(spec, nsInode)
}

func selectNetns(spec string, inode func(string) (uint64, error)) (func(Namespace) bool, error) {
	spec = strings.TrimSpace(spec)
	switch {
	case spec == "" || spec == "all":
		return func(Namespace) bool { return true }, nil
	case strings.HasPrefix(spec, "/"):
		ino, err := inode(spec)
		if err != nil {
			return nil, fmt.Errorf("inventory: --netns %s: %w", spec, err)
		}
		return func(ns Namespace) bool { return ns.Inode == ino }, nil
	case strings.HasPrefix(spec, "net:["):
		ino, err := parseNsLink(spec)
		if err != nil {
			return nil, fmt.Errorf("inventory: --netns %s: %w", spec, err)
		}
		return func(ns Namespace) bool { return ns.Inode == ino }, nil
	case strings.Contains(spec, "/") && !isPodName(spec):
		return nil, fmt.Errorf("inventory: --netns %q: a path must be absolute", spec)
	}
	if strings.ContainsAny(spec, "*?[") {
		if _, err := path.Match(spec, ""); err != nil {
			return nil, fmt.Errorf("inventory: --netns %q: bad pattern: %w", spec, err)
		}
		return func(ns Namespace) bool { ok, _ := path.Match(spec, ns.Name); return ok }, nil
	}
	name := spec
	if isHex64(name) {
		name = name[:12]
	}
	return func(ns Namespace) bool { return ns.Name == name }, nil
}

// isPodName reports whether s has the shape of a pod's namespace name,
// "<namespace>/<pod>": two non-empty parts, neither "." nor "..", so that a
// relative path such as "proc/1/ns/net" is still refused.
func isPodName(s string) bool {
	ns, pod, ok := strings.Cut(s, "/")
	return ok && ns != "" && pod != "" && !strings.Contains(pod, "/") &&
		ns != "." && ns != ".." && pod != "." && pod != ".."
}
