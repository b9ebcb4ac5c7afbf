package bpfowners

import (
	"encoding/binary"
	"testing"
)

// TestDecode reads owners.c's fd_record field by field, in native byte
// order, the reserved word ignored.
func TestDecode(t *testing.T) {
	b := make([]byte, recordLen)
	binary.NativeEndian.PutUint64(b[0:], 1<<40|12345)
	binary.NativeEndian.PutUint32(b[8:], 4242)
	binary.NativeEndian.PutUint32(b[12:], 17)
	binary.NativeEndian.PutUint32(b[16:], 4026532247)
	binary.NativeEndian.PutUint32(b[20:], 0xffffffff)
	want := FD{PID: 4242, FD: 17, Inode: 1<<40 | 12345, Netns: 4026532247}
	if got := decode(b); got != want {
		t.Errorf("decode = %+v, want %+v", got, want)
	}
}
