package probe

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf/btf"
	"github.com/google/go-cmp/cmp"
)

// marshalBTF builds raw BTF of types in the given byte order.
func marshalBTF(t *testing.T, order binary.ByteOrder, types ...btf.Type) []byte {
	t.Helper()
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, &btf.MarshalOptions{Order: order})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestAnonEnumerators finds enumerators of anonymous enums (32 and 64 bit)
// behind types of every other shape, in either byte order, and ignores the
// same names in a named enum and names that are only other strings.
func TestAnonEnumerators(t *testing.T) {
	u32 := &btf.Int{Name: "u32", Size: 4}
	named := &btf.Enum{Name: "named", Size: 4, Values: []btf.EnumValue{{Name: "A_BIT", Value: 60}}}
	st := &btf.Struct{Name: "A_BIT_HOLDER", Size: 8, Members: []btf.Member{{Name: "x", Type: u32}, {Name: "y", Type: u32, Offset: 32}}}
	proto := &btf.FuncProto{Return: u32, Params: []btf.FuncParam{{Name: "p", Type: &btf.Pointer{Target: st}}}}
	types := []btf.Type{
		named, st, proto, &btf.Func{Name: "f", Type: proto, Linkage: btf.GlobalFunc},
		&btf.Array{Index: u32, Type: u32, Nelems: 3}, &btf.Typedef{Name: "td", Type: &btf.Const{Type: &btf.Volatile{Type: u32}}},
		&btf.Union{Name: "un", Size: 4, Members: []btf.Member{{Name: "a", Type: u32}}},
		&btf.Fwd{Name: "fw"}, &btf.Float{Name: "double", Size: 8},
		&btf.Datasec{Name: ".data", Size: 4, Vars: []btf.VarSecinfo{{Type: &btf.Var{Name: "v", Type: u32}, Size: 4}}},
		&btf.Enum{Size: 4, Values: []btf.EnumValue{{Name: "A_BIT", Value: 3}, {Name: "OTHER", Value: 4}}},
		&btf.Enum{Size: 8, Values: []btf.EnumValue{{Name: "WIDE", Value: 1<<40 | 5}}},
	}
	want := map[string]uint64{"A_BIT": 3, "WIDE": 1<<40 | 5}
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		got, err := anonEnumerators(marshalBTF(t, order, types...), "A_BIT", "WIDE", "A_BIT_HOLDER", "absent")
		if err != nil {
			t.Fatalf("%v: %v", order, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v (-want +got):\n%s", order, diff)
		}
	}
	raw := marshalBTF(t, binary.LittleEndian, types...)
	for _, bad := range [][]byte{raw[:20], append([]byte{0, 0}, raw[2:]...), raw[:len(raw)-8]} {
		if got, err := anonEnumerators(bad, "A_BIT"); err == nil {
			t.Errorf("%d bytes of broken BTF: %v, want an error", len(bad), got)
		}
	}
}
