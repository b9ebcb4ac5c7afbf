package inventory

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	fakeProc = "testdata/netns/proc"
	fakeRun  = "testdata/netns/run/netns"
)

func TestListNamespacesFakeProc(t *testing.T) {
	got, err := ListNamespaces(fakeProc, fakeRun)
	if err != nil {
		t.Fatalf("ListNamespaces: %v", err)
	}
	want := []Namespace{
		{Inode: 4026531840, Name: "host", Path: fakeProc + "/1/ns/net", Kind: KindHost},
		// alias-of-host is the host's inode (host wins); stale is no namespace.
		{Inode: 4026532300, Name: "blue", Path: fakeRun + "/blue", Kind: KindNamed},
		{Inode: 4026532999, Name: "red", Path: fakeRun + "/red", Kind: KindNamed},
		// 42 is in the host's; 101 shares 100's; 150 holds blue; 300 is a zombie.
		{Inode: 4026532100, Name: "0123456789ab", Path: fakeProc + "/100/ns/net", Kind: KindProcess, PID: 100},
		{Inode: 4026532200, Name: "pid-sleep-200", Path: fakeProc + "/200/ns/net", Kind: KindProcess, PID: 200},
		{Inode: 4026532400, Name: "fedcba987654", Path: fakeProc + "/400/ns/net", Kind: KindProcess, PID: 400},
		{Inode: 4026532500, Name: "pid-unknown-500", Path: fakeProc + "/500/ns/net", Kind: KindProcess, PID: 500},
		{Inode: 4026532600, Name: "pid-my app-600", Path: fakeProc + "/600/ns/net", Kind: KindProcess, PID: 600},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListNamespaces (-want +got):\n%s", diff)
	}
}

func TestListNamespacesNoRunNetns(t *testing.T) {
	got, err := ListNamespaces(fakeProc, t.TempDir()+"/absent")
	if err != nil {
		t.Fatalf("ListNamespaces: %v", err)
	}
	// Without /run/netns, blue is named after its holder, pid 150.
	if len(got) != 7 || got[0].Name != "host" || got[2].Name != "pid-dnsmasq-150" {
		t.Errorf("got %d namespaces (%v), want host and 6 process-held ones", len(got), got)
	}
}

// TestListNamespacesPermission: an unprivileged caller cannot read pid 1's or
// other users' namespace links. It gets what it can read, its own namespace as
// "host", and one error per kind, not one per pid.
// TestListNamespacesSelfIsNamed: when PID 1's namespace is unreadable and
// ghostd runs inside a named namespace (ip netns exec), that namespace keeps
// its /run/netns name instead of becoming "host", so --netns NAME finds it.
func TestListNamespacesSelfIsNamed(t *testing.T) {
	l := newLister(fakeProc, fakeRun)
	blue, err := nsInode(fakeRun + "/blue")
	if err != nil {
		t.Fatal(err)
	}
	l.inode = func(p string) (uint64, error) {
		switch {
		case strings.HasPrefix(p, fakeProc+"/1/"):
			return 0, &fs.PathError{Op: "readlink", Path: p, Err: fs.ErrPermission}
		case p == fakeProc+"/self/ns/net":
			return blue, nil
		}
		return nsInode(p)
	}
	got, _ := l.list()
	for _, ns := range got {
		if ns.Inode == blue && ns.Name != "blue" {
			t.Errorf("our own named namespace is called %q, want blue", ns.Name)
		}
		if ns.Name == "host" {
			t.Errorf("a host entry was invented: %+v", ns)
		}
	}
}

func TestListNamespacesPermission(t *testing.T) {
	l := newLister(fakeProc, fakeRun)
	denied := func(p string) bool {
		return strings.HasPrefix(p, fakeProc+"/1/") || strings.HasPrefix(p, fakeProc+"/4") ||
			strings.HasPrefix(p, fakeProc+"/5") || p == fakeRun+"/red"
	}
	l.inode = func(p string) (uint64, error) {
		if denied(p) {
			return 0, &fs.PathError{Op: "readlink", Path: p, Err: fs.ErrPermission}
		}
		return nsInode(p)
	}
	got, err := l.list()
	var names []string
	for _, ns := range got {
		names = append(names, ns.Name+"@"+strings.TrimPrefix(ns.Path, "testdata/netns/"))
	}
	want := []string{
		"alias-of-host@run/netns/alias-of-host",
		"blue@run/netns/blue",
		"host@proc/self/ns/net", // self is pid 600, standing in for the host
		"0123456789ab@proc/100/ns/net",
		"pid-sleep-200@proc/200/ns/net",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("namespaces (-want +got):\n%s", diff)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("err = %v, want a permission error", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Fatalf("want one error per kind (host, named, process), got %d:\n%v", len(lines), err)
	}
	for i, kind := range []string{"host", "named", "process"} {
		if !strings.Contains(lines[i], "list "+kind+" namespace") {
			t.Errorf("error %d = %q, want the %s kind", i, lines[i], kind)
		}
	}
	if !strings.Contains(lines[2], "3 of 10 processes unreadable") {
		t.Errorf("process error %q, want a count of 3 of 10 (42, 400, 500; 1 is the host's error)", lines[2])
	}
}

func TestParseNsLink(t *testing.T) {
	for in, want := range map[string]uint64{
		"net:[4026531840]": 4026531840,
		"net:[]":           0,
		"net:[0]":          0,
		"mnt:[4026531840]": 0,
		"net:[12":          0,
		"net:[-1]":         0,
		"":                 0,
	} {
		got, err := parseNsLink(in)
		if got != want || (err == nil) != (want != 0) {
			t.Errorf("parseNsLink(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestSelectNetns(t *testing.T) {
	nss, err := ListNamespaces(fakeProc, fakeRun)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		spec    string
		want    []string // names selected
		wantErr string
	}{
		{"all", []string{"host", "blue", "red", "0123456789ab", "pid-sleep-200", "fedcba987654", "pid-unknown-500", "pid-my app-600"}, ""},
		{"", []string{"host", "blue", "red", "0123456789ab", "pid-sleep-200", "fedcba987654", "pid-unknown-500", "pid-my app-600"}, ""},
		{"host", []string{"host"}, ""},
		{"red", []string{"red"}, ""},
		{" blue ", []string{"blue"}, ""},
		{"pid-sleep-200", []string{"pid-sleep-200"}, ""},
		{"0123456789ab", []string{"0123456789ab"}, ""},
		{hexA, []string{"0123456789ab"}, ""}, // full container id
		{"nosuch", nil, ""},
		{"r*", []string{"red"}, ""}, // a path.Match pattern
		{"pid-*-[25]00", []string{"pid-sleep-200", "pid-unknown-500"}, ""},
		{"bad[", nil, "bad pattern"},
		{"net:[4026532200]", []string{"pid-sleep-200"}, ""},
		{"net:[x]", nil, "not a network namespace"},
		// Paths compare by inode: 101 shares 100's, 150 holds blue's, 42 the host's.
		{fakeProc + "/101/ns/net", nil, "a path must be absolute"},
		{"/abs/101/ns/net", []string{"0123456789ab"}, ""},
		// A pod's "<namespace>/<pod>" is a name, not a relative path.
		{"default/web", nil, ""},
		{"kube-system/*", nil, ""},
		{"a/b/c", nil, "a path must be absolute"},
		{"./x", nil, "a path must be absolute"},
		{"/abs/150/ns/net", []string{"blue"}, ""},
		{"/abs/42/ns/net", []string{"host"}, ""},
		{"/abs/300/ns/net", nil, "no such file"},
	}
	inode := func(p string) (uint64, error) {
		return nsInode(strings.Replace(p, "/abs", fakeProc, 1))
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			sel, err := selectNetns(tt.spec, inode)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ns := range nss {
				if sel(ns) {
					got = append(got, ns.Name)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("selected (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSelectNetnsRealPath resolves a real namespace path by inode.
func TestSelectNetnsRealPath(t *testing.T) {
	self, err := nsInode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	sel, err := SelectNetns("/proc/" + strconv.Itoa(os.Getpid()) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if !sel(Namespace{Inode: self}) || sel(Namespace{Inode: self + 1}) {
		t.Errorf("selector by path does not match by inode %d", self)
	}
}

// BenchmarkListNamespaces lists this machine's namespaces (one readlink per
// process, plus names for the process-held ones): the fixed cost of a scan.
func BenchmarkListNamespaces(b *testing.B) {
	nss, _ := ListNamespaces("", "")
	b.Logf("%d namespaces", len(nss))
	for b.Loop() {
		_, _ = ListNamespaces("", "")
	}
}

// TestListNamespacesUntrustedCgroup: a container id counts only when root
// owns the cgroup it comes from. A user's delegated cgroup named like a
// Docker scope must not give its namespace a container's name.
func TestListNamespacesUntrustedCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown of a test cgroup directory")
	}
	root := t.TempDir()
	user := root + "/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope"
	kube := root + "/memory/kubepods/besteffort/pod0f3c6d4e-1111-2222-3333-444455556666/fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	for _, d := range []string{user, kube} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(user, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	l := newLister(fakeProc, fakeRun)
	l.cgroupRoot = root
	got, err := l.list()
	if err != nil {
		t.Fatal(err)
	}
	names := map[int]string{}
	for _, ns := range got {
		if ns.Kind == KindProcess {
			names[ns.PID] = ns.Name
		}
	}
	if names[100] == "0123456789ab" || !strings.HasPrefix(names[100], "pid-") {
		t.Errorf("pid 100 in a cgroup owned by uid 1000 named %q, want a pid- name", names[100])
	}
	if names[400] != "fedcba987654" {
		t.Errorf("pid 400 in root's cgroup named %q, want its container id", names[400])
	}
}
