package bpfwalk

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func sampleRecord() Record {
	r := Record{
		Cookie: 0x0102030405060708, Now: 4295000000, BytesAcked: 1 << 40, BytesReceived: 12345,
		Netns: 4026531840, Inode: 99, UID: 1000, Ifindex: 3, TimerLeft: 250, RQueue: 5, WQueue: 6,
		RTO: 201, SndMSS: 1448, RcvMSS: 536, Unacked: 2, Lost: 1, RetransOut: 1,
		LSndTime: 1000, LRcvTime: 2000, RcvTstamp: 3000, SRTTUs: 800, MdevUs: 400, SndCwnd: 10,
		TotalRetrans: 4, SndWnd: 65535, RcvWnd: 65483, SndUna: 11, SndNxt: 12, RcvNxt: 13,
		Family: 10, State: 1, Timer: 2, Retrans: 3, CAState: 1, Retransmits: 2, Probes: 3, Backoff: 4,
		Options: 7, SndWScale: 7, RcvWScale: 9, Flags: FlagInfo, SPort: 443, DPort: 51234, Reserved: 0,
	}
	copy(r.Src[:], []byte{0x20, 0x01, 0x0d, 0xb8, 15: 1})
	copy(r.Dst[:], []byte{0x20, 0x01, 0x0d, 0xb8, 15: 2})
	return r
}

func TestParseRecordsRoundTrip(t *testing.T) {
	a, b := sampleRecord(), sampleRecord()
	b.Cookie, b.Family, b.State = 9, 2, 10
	raw := AppendRecord(AppendRecord(nil, &a), &b)
	if len(raw) != 2*RecordLen {
		t.Fatalf("AppendRecord wrote %d bytes, want %d", len(raw), 2*RecordLen)
	}
	var got []Record
	var r Record
	n, err := ParseRecords(raw, &r, func(r *Record) error { got = append(got, *r); return nil })
	if err != nil || n != 2 {
		t.Fatalf("ParseRecords = %d, %v", n, err)
	}
	if diff := cmp.Diff([]Record{a, b}, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	var one Record
	if err := one.Decode(raw[:RecordLen]); err != nil || one != a {
		t.Errorf("Decode = %v, %+v", err, one)
	}
	if err := one.Decode(raw); !errors.Is(err, ErrRecordLen) {
		t.Errorf("Decode of two records: %v", err)
	}
}

// TestRecordLayout pins the offsets walk.c's _Static_asserts pin on the C side.
func TestRecordLayout(t *testing.T) {
	r := Record{Netns: 0xa1a2a3a4, RcvNxt: 0xb1b2b3b4, Family: 0xc1, Flags: 0xc2, SPort: 0xd1d2, DPort: 0xe1e2}
	r.Src[0], r.Dst[15] = 0xf1, 0xf2
	raw := AppendRecord(nil, &r)
	for _, c := range []struct {
		name string
		off  int
		want []byte
	}{
		{"netns", 32, ne.AppendUint32(nil, r.Netns)},
		{"rcv_nxt", 128, ne.AppendUint32(nil, r.RcvNxt)},
		{"family", 132, []byte{0xc1}},
		{"flags", 143, []byte{0xc2}},
		{"src", 144, []byte{0xf1}},
		{"dst end", 175, []byte{0xf2}},
		{"sport (network order)", 176, []byte{0xd1, 0xd2}},
		{"dport (network order)", 178, []byte{0xe1, 0xe2}},
	} {
		if got := raw[c.off : c.off+len(c.want)]; !bytes.Equal(got, c.want) {
			t.Errorf("%s at %d = %x, want %x", c.name, c.off, got, c.want)
		}
	}
}

func TestParseRecordsRefusesPartial(t *testing.T) {
	s := sampleRecord()
	raw := AppendRecord(nil, &s)
	for _, l := range []int{1, RecordLen - 1, RecordLen + 1, 2*RecordLen - 8} {
		b := append(append([]byte(nil), raw...), raw...)[:l]
		called := false
		var r Record
		_, err := ParseRecords(b, &r, func(*Record) error { called = true; return nil })
		if !errors.Is(err, ErrRecordLen) {
			t.Errorf("%d bytes: err = %v, want ErrRecordLen", l, err)
		}
		if called {
			t.Errorf("%d bytes: fn called on partial output", l)
		}
	}
}

func TestParseRecordsStopsOnCallbackError(t *testing.T) {
	s := sampleRecord()
	raw := AppendRecord(AppendRecord(nil, &s), &s)
	stop := errors.New("stop")
	var r Record
	n, err := ParseRecords(raw, &r, func(*Record) error { return stop })
	if err != stop || n != 1 {
		t.Errorf("ParseRecords = %d, %v; want 1, stop", n, err)
	}
}

// FuzzParseRecords: any input either is refused whole or decodes into
// records that encode back to the same bytes.
func FuzzParseRecords(f *testing.F) {
	s := sampleRecord()
	f.Add(AppendRecord(nil, &s))
	f.Add([]byte{})
	f.Add(make([]byte, RecordLen+1))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out []byte
		var r Record
		n, err := ParseRecords(b, &r, func(r *Record) error {
			out = AppendRecord(out, r)
			return nil
		})
		if err != nil {
			if !errors.Is(err, ErrRecordLen) || n != 0 || out != nil {
				t.Fatalf("error %v after %d records", err, n)
			}
			return
		}
		if n != len(b)/RecordLen || !bytes.Equal(out, b) {
			t.Fatalf("round trip of %d bytes gave %d records, %d bytes", len(b), n, len(out))
		}
	})
}
