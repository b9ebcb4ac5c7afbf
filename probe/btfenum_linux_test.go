package probe

import (
	"testing"

	"github.com/cilium/ebpf/btf"
	"github.com/google/go-cmp/cmp"
)

// TestAnonEnumeratorsKernel: on the running kernel's BTF, the enumerators
// the sequence reader needs have the values a full decode finds.
func TestAnonEnumeratorsKernel(t *testing.T) {
	kernel, err := btf.LoadSpec(DefaultBTFPath)
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	names := []string{"INET_FLAGS_AUTOFLOWLABEL_SET", "INET_FLAGS_AUTOFLOWLABEL"}
	want := map[string]uint64{}
	for typ, err := range kernel.All() {
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := typ.(*btf.Enum); ok && e.Name == "" {
			for _, v := range e.Values {
				if v.Name == names[0] || v.Name == names[1] {
					want[v.Name] = v.Value
				}
			}
		}
	}
	got, err := enumeratorsIn(DefaultBTFPath, names...)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-decoded +in place):\n%s", diff)
	}
	t.Logf("%v", got)
}
