package probe

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

func TestIterNoBTF(t *testing.T) {
	// Runs unprivileged too: the BTF check comes first.
	empty := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(empty, []byte("not BTF"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, says string
	}{
		{"/nonexistent/btf/vmlinux", "no BTF at /nonexistent/btf/vmlinux"},
		{empty, "read BTF " + empty},
	} {
		r, err := newIterReader(tc.path)
		if err == nil {
			r.Close()
			t.Fatalf("%s: loaded", tc.path)
		}
		if !errors.Is(err, ErrNoSeq) || !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q: want one line wrapping ErrNoSeq that says %q", tc.path, err, tc.says)
		}
	}
}

func iterKeys(m map[uint64]SeqState) []uint64 {
	keys := make([]uint64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return iterSorted(keys)
}

func iterSorted(s []uint64) []uint64 {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// TestIterMissingCaps re-runs this test binary as nobody with only some
// capabilities and checks that NewIterReader says which ones are missing.
func TestIterMissingCaps(t *testing.T) {
	if os.Getenv("GHOSTD_IT_CAPS_CHILD") == "1" {
		r, err := NewIterReader()
		if err == nil {
			r.Close()
			fmt.Println("loaded")
			os.Exit(0)
		}
		fmt.Printf("errors.Is(ErrNoSeq)=%v: %v\n", errors.Is(err, ErrNoSeq), err)
		os.Exit(0)
	}
	needRoot(t)
	// nobody cannot reach the test binary in go's 0700 build directory: copy it.
	dir, err := os.MkdirTemp("", "gd-it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "probe.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		caps []uintptr
	}{
		{"none", nil},
		{"CAP_BPF only", []uintptr{unix.CAP_BPF}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, "-test.run=^TestIterMissingCaps$", "-test.count=1")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GHOSTD_IT_CAPS_CHILD=1")
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
				AmbientCaps: tc.caps,
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v: %s", err, out)
			}
			line := strings.SplitN(string(out), "\n", 2)[0]
			if !strings.HasPrefix(line, "errors.Is(ErrNoSeq)=true: ") || !strings.Contains(line, "missing CAP_BPF and CAP_PERFMON") {
				t.Errorf("without the capabilities NewIterReader said %q", line)
			}
			t.Log(line)
		})
	}
}

// TestIterVerifierRejects feeds the loader a kernel BTF whose tcp_sock has
// none of the fields the program reads: CO-RE cannot relocate them, the
// verifier refuses the poisoned instructions, and the error says so.
func TestIterVerifierRejects(t *testing.T) {
	needRoot(t)
	kernel, err := btf.LoadSpec(DefaultBTFPath)
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	var target *btf.Func
	if err := kernel.TypeByName("bpf_iter_tcp", &target); err != nil {
		t.Fatal(err)
	}
	hollow := &btf.Struct{Name: "tcp_sock", Size: 8, Members: []btf.Member{{Name: "unrelated", Type: &btf.Int{Name: "u64", Size: 8}}}}
	b, err := btf.NewBuilder([]btf.Type{target, hollow}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := newIterReader(path)
	if err == nil {
		r.Close()
		t.Fatal("loaded against a tcp_sock without snd_una")
	}
	if !errors.Is(err, ErrNoSeq) || !strings.Contains(err.Error(), "verifier rejected the program") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q: want one line wrapping ErrNoSeq that blames the verifier", err)
	}
	t.Log(err)

	// Without bpf_iter_tcp in the BTF the kernel predates iter/tcp (5.9).
	b, err = btf.NewBuilder([]btf.Type{hollow}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err = b.Marshal(nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = newIterReader(path)
	if err == nil {
		r.Close()
		t.Fatal("loaded without bpf_iter_tcp")
	}
	if !errors.Is(err, ErrNoSeq) || !strings.Contains(err.Error(), "kernel has no iter/tcp BPF iterator (needs Linux 5.9+)") {
		t.Errorf("error %q: want ErrNoSeq blaming the kernel version", err)
	}
}
