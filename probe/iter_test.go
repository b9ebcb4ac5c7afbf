package probe

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeSeqRecords(t *testing.T) {
	a := seqRecord{
		Cookie: 0x0102030405060708, SndUna: 100, SndNxt: 150, RcvNxt: 4000000000,
		SndWnd: 65483, RcvWnd: 65536, TSRecent: 7, TSOffset: 1 << 31,
		State: 1, SndWScale: 7, RcvWScale: 14, Flags: seqFlagTSOK,
	}
	b := seqRecord{Cookie: 2, State: 8, Flags: 0x80} // unknown flag bits are kept, not trusted
	two := appendSeqRecord(appendSeqRecord(nil, a), b)
	if len(two) != 2*seqRecordLen {
		t.Fatalf("appendSeqRecord wrote %d bytes for two records", len(two))
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
		SndWScale: 7, RcvWScale: 14, TSOK: true, TSRecent: 7, TSOffset: 1 << 31}
	if diff := cmp.Diff(want, a.Seq()); diff != "" {
		t.Errorf("Seq (-want +got):\n%s", diff)
	}
	if b.Seq().TSOK {
		t.Error("TSOK set without the flag")
	}
}

// FuzzDecodeSeqRecords: the decoder never panics, accepts exactly the inputs
// that are whole records, and re-encoding what it decoded gives the input back.
func FuzzDecodeSeqRecords(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, seqRecordLen))
	f.Add(make([]byte, seqRecordLen+3))
	f.Add(appendSeqRecord(nil, seqRecord{Cookie: 9, SndUna: 1, SndNxt: 2, RcvNxt: 3, State: 1, Flags: seqFlagTSOK}))
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
			if r.Seq().TSOK != (r.Flags&seqFlagTSOK != 0) {
				t.Fatalf("TSOK %v from flags %#x", r.Seq().TSOK, r.Flags)
			}
		}
		if !bytes.Equal(in, out) && len(in) > 0 {
			t.Fatalf("round trip:\n in %x\nout %x", in, out)
		}
	})
}
