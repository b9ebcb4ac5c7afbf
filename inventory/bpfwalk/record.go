package bpfwalk

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// RecordLen is the size of one record written by walk.c (struct
// walk_record). The length is the record's version: the program and this
// decoder are built together, and output that is not a whole number of
// records of this length is refused.
const RecordLen = 184

// FlagInfo in Record.Flags says the tcp_info fields are filled.
const FlagInfo = 0x1

// ErrRecordLen is wrapped when the walk's output is not a whole number of records.
var ErrRecordLen = errors.New("bpfwalk: output is not a whole number of records")

// Record is one socket as the walk reports it. Times are raw jiffies, as
// the kernel keeps them; Src, Dst, SPort and DPort are in network order, as
// sock_diag reports them.
type Record struct {
	Cookie        uint64
	Now           uint64 // jiffies when the record was written
	BytesAcked    uint64
	BytesReceived uint64
	Netns         uint32 // inode of the socket's network namespace
	Inode         uint32
	UID           uint32 // in the initial user namespace, as ghostd's sock_diag dumps report it
	Ifindex       uint32
	TimerLeft     uint32 // jiffies until the pending timer fires
	RQueue        uint32
	WQueue        uint32
	RTO           uint32 // jiffies
	SndMSS        uint32
	RcvMSS        uint32
	Unacked       uint32
	Lost          uint32
	RetransOut    uint32
	LSndTime      uint32 // tcp_jiffies32 of the last data sent
	LRcvTime      uint32 // tcp_jiffies32 of the last data received
	RcvTstamp     uint32 // tcp_jiffies32 of the last ACK received
	SRTTUs        uint32 // smoothed RTT in µs, << 3
	MdevUs        uint32 // RTT deviation in µs, << 2
	SndCwnd       uint32
	TotalRetrans  uint32
	SndWnd        uint32
	RcvWnd        uint32
	SndUna        uint32
	SndNxt        uint32
	RcvNxt        uint32
	Family        uint8
	State         uint8
	Timer         uint8 // idiag_timer
	Retrans       uint8 // idiag_retrans
	CAState       uint8
	Retransmits   uint8
	Probes        uint8
	Backoff       uint8
	Options       uint8 // tcpi_options
	SndWScale     uint8
	RcvWScale     uint8
	Flags         uint8
	Src, Dst      [16]byte
	SPort, DPort  uint16 // host order (decoded from network order)
	Reserved      uint32
}

// Offsets in struct walk_record.
const (
	offCookie        = 0
	offNow           = 8
	offBytesAcked    = 16
	offBytesReceived = 24
	offU32           = 32 // 25 u32 fields from netns to rcv_nxt
	offU8            = 132
	offSrc           = 144
	offDst           = 160
	offSPort         = 176
	offDPort         = 178
	offReserved      = 180
)

// ParseRecords decodes the walk's output, back-to-back RecordLen-byte
// records in native byte order (addresses and ports in network order),
// calling fn with a *Record that is reused for the next one. An error from
// fn stops the parse and is returned as is. It returns the number of records
// passed to fn. Output whose length is not a multiple of RecordLen is
// refused before any record is decoded.
func ParseRecords(b []byte, r *Record, fn func(*Record) error) (int, error) {
	if len(b)%RecordLen != 0 {
		return 0, fmt.Errorf("%w: %d bytes", ErrRecordLen, len(b))
	}
	n := 0
	for ; len(b) >= RecordLen; b = b[RecordLen:] {
		decodeRecord(b[:RecordLen], r)
		n++
		if err := fn(r); err != nil {
			return n, err
		}
	}
	return n, nil
}

var ne = binary.NativeEndian

// Decode decodes the one record in b, which must be RecordLen bytes long.
func (r *Record) Decode(b []byte) error {
	if len(b) != RecordLen {
		return fmt.Errorf("%w: %d bytes", ErrRecordLen, len(b))
	}
	decodeRecord(b, r)
	return nil
}

func decodeRecord(b []byte, r *Record) {
	_ = b[RecordLen-1]
	r.Cookie = ne.Uint64(b[offCookie:])
	r.Now = ne.Uint64(b[offNow:])
	r.BytesAcked = ne.Uint64(b[offBytesAcked:])
	r.BytesReceived = ne.Uint64(b[offBytesReceived:])
	for i, p := range r.u32s() {
		*p = ne.Uint32(b[offU32+4*i:])
	}
	for i, p := range r.u8s() {
		*p = b[offU8+i]
	}
	copy(r.Src[:], b[offSrc:offSrc+16])
	copy(r.Dst[:], b[offDst:offDst+16])
	r.SPort = binary.BigEndian.Uint16(b[offSPort:])
	r.DPort = binary.BigEndian.Uint16(b[offDPort:])
	r.Reserved = ne.Uint32(b[offReserved:])
}

// u32s lists the u32 fields in record order (walk.c, from netns to rcv_nxt).
func (r *Record) u32s() [25]*uint32 {
	return [25]*uint32{
		&r.Netns, &r.Inode, &r.UID, &r.Ifindex, &r.TimerLeft, &r.RQueue, &r.WQueue,
		&r.RTO, &r.SndMSS, &r.RcvMSS, &r.Unacked, &r.Lost, &r.RetransOut,
		&r.LSndTime, &r.LRcvTime, &r.RcvTstamp, &r.SRTTUs, &r.MdevUs, &r.SndCwnd,
		&r.TotalRetrans, &r.SndWnd, &r.RcvWnd, &r.SndUna, &r.SndNxt, &r.RcvNxt,
	}
}

// u8s lists the u8 fields in record order (walk.c, from family to flags).
func (r *Record) u8s() [12]*uint8 {
	return [12]*uint8{
		&r.Family, &r.State, &r.Timer, &r.Retrans, &r.CAState, &r.Retransmits,
		&r.Probes, &r.Backoff, &r.Options, &r.SndWScale, &r.RcvWScale, &r.Flags,
	}
}

// AppendRecord appends r in the walk's format: the inverse of ParseRecords,
// for tests and fuzzing.
func AppendRecord(b []byte, r *Record) []byte {
	b = ne.AppendUint64(b, r.Cookie)
	b = ne.AppendUint64(b, r.Now)
	b = ne.AppendUint64(b, r.BytesAcked)
	b = ne.AppendUint64(b, r.BytesReceived)
	rr := *r
	for _, p := range rr.u32s() {
		b = ne.AppendUint32(b, *p)
	}
	for _, p := range rr.u8s() {
		b = append(b, *p)
	}
	b = append(b, r.Src[:]...)
	b = append(b, r.Dst[:]...)
	b = binary.BigEndian.AppendUint16(b, r.SPort)
	b = binary.BigEndian.AppendUint16(b, r.DPort)
	return ne.AppendUint32(b, r.Reserved)
}
