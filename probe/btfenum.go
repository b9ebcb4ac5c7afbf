package probe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// BTF type kinds whose records anonEnumerators must step over (uapi
// linux/btf.h): each is a 12-byte btf_type and then, by kind, nothing, a
// fixed word, or vlen entries.
const (
	btfKindInt       = 1
	btfKindArray     = 3
	btfKindStruct    = 4
	btfKindUnion     = 5
	btfKindEnum      = 6
	btfKindFuncProto = 13
	btfKindVar       = 14
	btfKindDatasec   = 15
	btfKindFloat     = 16
	btfKindDeclTag   = 17
	btfKindTypeTag   = 18
	btfKindEnum64    = 19
)

// anonEnumerators returns the values of the named enumerators of the
// anonymous enums in raw BTF (as /sys/kernel/btf/vmlinux holds it),
// reading its type section in place: decoding every type of the kernel's
// BTF to find them cost ~40 ms and ~15 MiB at every start of ghostd. Names
// not found are absent from the map.
func anonEnumerators(raw []byte, names ...string) (map[string]uint64, error) {
	if len(raw) < 24 {
		return nil, errors.New("btf: too short")
	}
	var bo binary.ByteOrder
	switch {
	case binary.LittleEndian.Uint16(raw) == 0xeb9f:
		bo = binary.LittleEndian
	case binary.BigEndian.Uint16(raw) == 0xeb9f:
		bo = binary.BigEndian
	default:
		return nil, errors.New("btf: bad magic")
	}
	hdrLen, typeOff, typeLen, strOff, strLen := bo.Uint32(raw[4:]), bo.Uint32(raw[8:]), bo.Uint32(raw[12:]), bo.Uint32(raw[16:]), bo.Uint32(raw[20:])
	section := func(off, n uint32) ([]byte, error) {
		start, end := uint64(hdrLen)+uint64(off), uint64(hdrLen)+uint64(off)+uint64(n)
		if end > uint64(len(raw)) {
			return nil, fmt.Errorf("btf: section [%d, %d) past the end (%d bytes)", start, end, len(raw))
		}
		return raw[start:end], nil
	}
	types, err := section(typeOff, typeLen)
	if err != nil {
		return nil, err
	}
	strs, err := section(strOff, strLen)
	if err != nil {
		return nil, err
	}
	// Strings are deduplicated: each name is at one offset, or absent.
	want := make(map[uint32]string, len(names))
	for _, name := range names {
		if i := bytes.Index(strs, []byte("\x00"+name+"\x00")); i >= 0 {
			want[uint32(i+1)] = name
		}
	}
	found := make(map[string]uint64, len(want))
	for off := 0; off < len(types) && len(found) < len(want); {
		if off+12 > len(types) {
			return nil, fmt.Errorf("btf: truncated type at %d", off)
		}
		nameOff, info := bo.Uint32(types[off:]), bo.Uint32(types[off+4:])
		kind, vlen := info>>24&0x1f, int(info&0xffff)
		off += 12
		var entry int // bytes per vlen entry
		switch kind {
		case btfKindInt, btfKindVar, btfKindDeclTag:
			off += 4
		case btfKindArray:
			off += 12
		case btfKindStruct, btfKindUnion, btfKindDatasec, btfKindEnum64:
			entry = 12
		case btfKindEnum, btfKindFuncProto:
			entry = 8
		case btfKindFloat, btfKindTypeTag:
		default:
			if kind == 0 || kind > btfKindEnum64 {
				return nil, fmt.Errorf("btf: unknown kind %d at %d", kind, off-12)
			}
			// PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC: nothing more.
		}
		end := off + vlen*entry
		if end > len(types) {
			return nil, fmt.Errorf("btf: truncated type at %d", off-12)
		}
		if nameOff == 0 && (kind == btfKindEnum || kind == btfKindEnum64) {
			for e := off; e < end; e += entry {
				name, ok := want[bo.Uint32(types[e:])]
				if !ok {
					continue
				}
				v := uint64(bo.Uint32(types[e+4:]))
				if kind == btfKindEnum64 {
					v |= uint64(bo.Uint32(types[e+8:])) << 32
				}
				found[name] = v
			}
		}
		off = end
	}
	return found, nil
}
