package probe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeSeqRecords(t *testing.T) {
	a := seqRecord{
		Cookie: 0x0102030405060708, SndUna: 100, SndNxt: 150, RcvNxt: 4000000000,
		SndWnd: 65483, RcvWnd: 65536, TSRecent: 7, TSOffset: 1 << 31,
		State: 1, SndWScale: 7, RcvWScale: 14, Flags: seqFlagTSOK | seqFlagMD5 | seqFlagUSecTS,
		Mark: 0xdeadbeef, BoundIf: 7, FlowLabel: 0xfffff | 1<<31, TxHash: 0x12345678,
		KeepTime: 300 * 250, KeepIntvl: 100 * 250, UserTimeout: 5000,
		TOS: 0xb9, TClass: 0x2a, KeepProbes: 3, Reserved: 0xff,
	}
	b := seqRecord{Cookie: 2, State: 8, Flags: 0x80} // unknown flag bits are kept, not trusted
	two := appendSeqRecord(appendSeqRecord(nil, a), b)
	if len(two) != 2*seqRecordLen {
		t.Fatalf("appendSeqRecord wrote %d bytes for two records", len(two))
	}
	// The offsets seq.c's _Static_asserts pin, read without the decoder.
	ne := binary.NativeEndian
	for _, f := range []struct {
		name      string
		off, size int
		want      uint64
	}{
		{"cookie", 0, 8, a.Cookie}, {"snd_una", 8, 4, 100}, {"rcv_nxt", 16, 4, 4000000000},
		{"tsoffset", 32, 4, 1 << 31}, {"state", 36, 1, 1}, {"flags", 39, 1, uint64(a.Flags)},
		{"mark", 40, 4, 0xdeadbeef}, {"txhash", 52, 4, 0x12345678}, {"user_timeout", 64, 4, 5000},
		{"tos", 68, 1, 0xb9}, {"keepalive_probes", 70, 1, 3}, {"reserved", 71, 1, 0xff},
	} {
		var got uint64
		switch v := two[f.off : f.off+f.size]; f.size {
		case 8:
			got = ne.Uint64(v)
		case 4:
			got = uint64(ne.Uint32(v))
		default:
			got = uint64(v[0])
		}
		if got != f.want {
			t.Errorf("%s at offset %d: %#x, want %#x", f.name, f.off, got, f.want)
		}
	}

	for _, tc := range []struct {
		name string
		in   []byte
		want []seqRecord
		err  error
	}{
		{name: "empty", in: nil, want: []seqRecord{}},
		{name: "two", in: two, want: []seqRecord{a, b}},
		{name: "short", in: two[:seqRecordLen-1], err: errSeqRecordLen},
		{name: "trailing", in: two[:seqRecordLen+1], err: errSeqRecordLen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeSeqRecords(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	want := SeqState{SndUna: 100, SndNxt: 150, RcvNxt: 4000000000, SndWnd: 65483, RcvWnd: 65536,
		SndWScale: 7, RcvWScale: 14, TSOK: true, TSRecent: 7, TSOffset: 1 << 31, USecTS: true, MD5: true,
		Mark: 0xdeadbeef, BoundIf: 7, TOS: 0xb8, TClass: 0x28, FlowLabel: 0xfffff,
		KeepTime: 300 * time.Second, KeepIntvl: 100 * time.Second, KeepProbes: 3, UserTimeout: 5 * time.Second}
	if diff := cmp.Diff(want, a.Seq(250)); diff != "" {
		t.Errorf("Seq (-want +got):\n%s", diff)
	}
	if got := a.Seq(1000); got.KeepTime != 75*time.Second || got.KeepIntvl != 25*time.Second {
		t.Errorf("at HZ 1000: keepalive %v/%v, want 75s/25s", got.KeepTime, got.KeepIntvl)
	}
	if got := a.Seq(0); got.KeepTime != 0 {
		t.Errorf("unknown HZ: keepalive %v, want 0", got.KeepTime)
	}
	if st := b.Seq(250); st.TSOK || st.MD5 || st.AO || st.Unprobeable() != "" {
		t.Errorf("flags set without their bits: %+v", st)
	}
	for _, tc := range []struct {
		flags uint8
		want  string
	}{{0, ""}, {seqFlagMD5, UnprobeableTCPMD5}, {seqFlagAO, UnprobeableTCPAO}, {seqFlagMD5 | seqFlagAO, UnprobeableTCPAO}} {
		st := seqRecord{Flags: tc.flags}.Seq(250)
		if got := st.Unprobeable(); got != tc.want {
			t.Errorf("flags %#x: Unprobeable %q, want %q", tc.flags, got, tc.want)
		}
	}
}

// FuzzDecodeSeqRecords: the decoder never panics, accepts exactly the inputs
// that are whole records, and re-encoding what it decoded gives the input back.
func FuzzDecodeSeqRecords(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, seqRecordLen))
	f.Add(make([]byte, seqRecordLen+3))
	f.Add(appendSeqRecord(nil, seqRecord{Cookie: 9, SndUna: 1, SndNxt: 2, RcvNxt: 3, State: 1, Flags: seqFlagTSOK}))
	f.Add(appendSeqRecord(nil, seqRecord{Cookie: 9, Flags: seqFlagMD5 | seqFlagAO, Mark: 1, BoundIf: 1<<31 + 5,
		FlowLabel: ^uint32(0), KeepTime: ^uint32(0), UserTimeout: ^uint32(0), TOS: 0xff, TClass: 0xff, KeepProbes: 255}))
	f.Fuzz(func(t *testing.T, in []byte) {
		recs, err := decodeSeqRecords(in)
		if (err == nil) != (len(in)%seqRecordLen == 0) {
			t.Fatalf("%d bytes: error %v", len(in), err)
		}
		if err != nil {
			if recs != nil {
				t.Fatalf("records %v with error %v", recs, err)
			}
			return
		}
		if len(recs) != len(in)/seqRecordLen {
			t.Fatalf("%d records from %d bytes", len(recs), len(in))
		}
		var out []byte
		for _, r := range recs {
			out = appendSeqRecord(out, r)
			st := r.Seq(250)
			if st.TSOK != (r.Flags&seqFlagTSOK != 0) || st.MD5 != (r.Flags&seqFlagMD5 != 0) || st.AO != (r.Flags&seqFlagAO != 0) {
				t.Fatalf("flags %#x decoded as %+v", r.Flags, st)
			}
			if (st.MD5 || st.AO) != (st.Unprobeable() != "") {
				t.Fatalf("flags %#x: Unprobeable %q", r.Flags, st.Unprobeable())
			}
			if st.FlowLabel > 0xfffff || st.TOS&3 != 0 || st.TClass&3 != 0 || st.KeepTime < 0 || st.UserTimeout < 0 {
				t.Fatalf("out-of-range fields from %+v: %+v", r, st)
			}
		}
		if !bytes.Equal(in, out) && len(in) > 0 {
			t.Fatalf("round trip:\n in %x\nout %x", in, out)
		}
	})
}

func TestParseTimensOffset(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"monotonic           0         0\nboottime            0         0\n", 0, false},
		{"boottime 5 0\nmonotonic -86400 250\n", -86400*time.Second + 250, false},
		{"1 7 1\n7 9 9\n", 7*time.Second + 1, false},
		{"", 0, false},
		{"monotonic x 0\n", 0, true},
		{"monotonic 1 1000000000\n", 0, true},
	} {
		got, err := parseTimensOffset([]byte(tc.in))
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%q: %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}
