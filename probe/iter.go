package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/ghostd/ghostd/internal/bpfload"
	"github.com/ghostd/ghostd/internal/kernelhz"
)

// DefaultBTFPath is where the running kernel exposes its BTF; the iterator's
// CO-RE relocations and its attach target are resolved against it.
const DefaultBTFPath = bpfload.KernelBTFPath

// IterReader reads sequence-space state through a BPF TCP socket iterator
// (iter/tcp). It only reads kernel memory: the sockets, their owners and
// their peers see nothing.
//
// The program is loaded once by NewIterReader. ReadSeq runs one iterator pass
// at a time: the map of wanted cookies is shared by every pass, so concurrent
// calls queue (a pass over 200k sockets costs about 150 ms). A pass walks the
// whole TCP hash table however few cookies are wanted, so Prober.ReadAhead
// reads many targets in one pass and caches their states for later probes.
// Its methods are safe for concurrent use.
type IterReader struct {
	sem  chan struct{} // held during a pass, and by Close
	impl *iterImpl     // nil until loaded (NewIterReaderOnUse) and once closed
	// load is the BTF to load the program against at the first pass
	// (NewIterReaderOnUse); "" once loaded, tried or closed.
	load    string
	loadErr error // why that load failed; it wraps ErrNoSeq
	hz      int   // the kernel's jiffies per second, for keepalive times
}

var _ SeqReader = (*IterReader)(nil)

// NewIterReader loads and attaches the iterator program. When the kernel or
// the process's privileges do not allow it, the error wraps ErrNoSeq and says
// why in one line (no BTF, missing CAP_BPF/CAP_PERFMON, no iter/tcp, verifier
// rejection).
func NewIterReader() (*IterReader, error) {
	return newIterReader(DefaultBTFPath)
}

// NewIterReaderOnUse is NewIterReader that loads the program at the first
// pass rather than now: a scan with nothing to probe never pays for the
// kernel's BTF and the verifier (~20 ms). It checks now what it can without
// loading, and fails as NewIterReader does when the kernel has no BTF or
// predates iter/tcp. The caller checks the privileges. Should the load fail
// at the first pass all the same (the verifier), that pass's error wraps
// ErrNoSeq and says why, and so does every later one.
func NewIterReaderOnUse() (*IterReader, error) {
	if err := checkIter(DefaultBTFPath); err != nil {
		return nil, err
	}
	hz, err := kernelhz.HZ()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoSeq, err)
	}
	return &IterReader{sem: make(chan struct{}, 1), load: DefaultBTFPath, hz: hz}, nil
}

func newIterReader(btfPath string) (*IterReader, error) {
	impl, err := newIterImpl(btfPath)
	if err != nil {
		return nil, err
	}
	hz, err := kernelhz.HZ()
	if err != nil {
		impl.close()
		return nil, fmt.Errorf("%w: %w", ErrNoSeq, err)
	}
	return &IterReader{sem: make(chan struct{}, 1), impl: impl, hz: hz}, nil
}

// ReadSeq returns the state of the sockets whose cookies are given and that
// live in the network namespace at nsPath ("" = the caller's own). Sockets that
// are gone, in another namespace, listening, in TIME_WAIT or not yet accepted
// (request sockets) are absent from the map; that is not an error.
func (r *IterReader) ReadSeq(ctx context.Context, nsPath string, cookies []uint64) (map[uint64]SeqState, error) {
	if len(cookies) == 0 {
		return map[uint64]SeqState{}, nil
	}
	want := slices.Clone(cookies)
	slices.Sort(want)
	want = slices.Compact(want)

	if r.sem == nil {
		return nil, fmt.Errorf("%w: IterReader not made by NewIterReader", ErrNoSeq)
	}
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("probe: read seq netns %q: %w", nsPath, ctx.Err())
	}
	defer func() { <-r.sem }()
	if r.load != "" {
		r.impl, r.loadErr = newIterImpl(r.load)
		r.load = ""
		// Past start-up nothing else is loading: the kernel's BTF,
		// decoded for this load, is garbage.
		bpfload.Release()
	}
	switch {
	case r.loadErr != nil:
		return nil, r.loadErr
	case r.impl == nil:
		return nil, fmt.Errorf("probe: read seq: %w", os.ErrClosed)
	}

	out := make(map[uint64]SeqState, len(want))
	for chunk := range slices.Chunk(want, maxWanted) {
		raw, err := r.impl.pass(ctx, nsPath, chunk)
		if err != nil {
			return nil, fmt.Errorf("probe: read seq netns %q: %w", nsPath, err)
		}
		recs, err := decodeSeqRecords(raw)
		if err != nil {
			return nil, fmt.Errorf("probe: read seq netns %q: %w", nsPath, err)
		}
		for _, rec := range recs {
			// The map only holds this chunk, but keep the contract even if a
			// stale entry survived a failed cleanup.
			if _, ok := slices.BinarySearch(chunk, rec.Cookie); ok {
				out[rec.Cookie] = rec.Seq(r.hz)
			}
		}
	}
	return out, nil
}

// Close detaches and unloads the program. A pass in progress finishes first.
func (r *IterReader) Close() error {
	if r.sem == nil {
		return nil
	}
	r.sem <- struct{}{}
	defer func() { <-r.sem }()
	r.load = ""
	if r.impl == nil {
		return nil
	}
	err := r.impl.close()
	r.impl = nil
	return err
}

// maxWanted is the capacity of the BPF map of wanted cookies (max_entries in
// bpf/seq.c); larger requests take several passes.
const maxWanted = 1 << 18

// seqRecordLen is the size of one record written by bpf/seq.c (struct
// seq_record). The length is the record's version: the program and this
// decoder are built together, and a pass whose output is not a whole number
// of records of this length is refused.
const seqRecordLen = 72

// Flags in seqRecord.Flags.
const (
	seqFlagTSOK   = 0x1 // the connection negotiated TCP timestamps
	seqFlagMD5    = 0x2 // the socket holds TCP-MD5 keys
	seqFlagAO     = 0x4 // the socket holds TCP-AO keys
	seqFlagUSecTS = 0x8 // TSval counts microseconds
)

// seqRecord is one socket as the iterator reports it, in the kernel's byte
// order. Its fields are the record's, in order and of the same sizes, with
// no padding: encoding/binary decodes it from the wire format as it is.
type seqRecord struct {
	Cookie                 uint64
	SndUna, SndNxt, RcvNxt uint32
	SndWnd, RcvWnd         uint32
	TSRecent, TSOffset     uint32
	State                  uint8 // sk_state, as inventory.State numbers it
	SndWScale, RcvWScale   uint8
	Flags                  uint8
	Mark, BoundIf          uint32
	FlowLabel, TxHash      uint32
	KeepTime, KeepIntvl    uint32 // jiffies
	UserTimeout            uint32 // ms
	TOS, TClass            uint8
	KeepProbes             uint8
	Reserved               uint8
}

// ecnMask clears the ECN bits of a TOS or traffic class byte.
const ecnMask = 0xfc

// Seq returns the record as the SeqReader contract reports it; hz is the
// kernel's jiffies per second (0 leaves the keepalive durations zero).
func (r seqRecord) Seq(hz int) SeqState {
	jiffies := func(j uint32) time.Duration {
		if hz <= 0 {
			return 0
		}
		return time.Duration(j) * time.Second / time.Duration(hz)
	}
	return SeqState{
		SndUna: r.SndUna, SndNxt: r.SndNxt, RcvNxt: r.RcvNxt,
		SndWnd: r.SndWnd, RcvWnd: r.RcvWnd,
		SndWScale: r.SndWScale, RcvWScale: r.RcvWScale,
		TSOK:     r.Flags&seqFlagTSOK != 0,
		TSRecent: r.TSRecent, TSOffset: r.TSOffset,
		USecTS: r.Flags&seqFlagUSecTS != 0,
		MD5:    r.Flags&seqFlagMD5 != 0,
		AO:     r.Flags&seqFlagAO != 0,

		Mark:      r.Mark,
		BoundIf:   int(int32(r.BoundIf)),
		TOS:       r.TOS & ecnMask,
		TClass:    r.TClass & ecnMask,
		FlowLabel: r.FlowLabel & 0xfffff,

		KeepTime:    jiffies(r.KeepTime),
		KeepIntvl:   jiffies(r.KeepIntvl),
		KeepProbes:  int(r.KeepProbes),
		UserTimeout: time.Duration(r.UserTimeout) * time.Millisecond,
	}
}

var errSeqRecordLen = errors.New("iterator output is not a whole number of records")

// decodeSeqRecords parses the iterator's output: back-to-back 72-byte records
// in native byte order:
//
//	0 cookie u64 | 8 snd_una | 12 snd_nxt | 16 rcv_nxt | 20 snd_wnd | 24 rcv_wnd
//	28 ts_recent | 32 tsoffset (u32 each) | 36 state | 37 snd_wscale | 38 rcv_wscale | 39 flags
//	40 mark | 44 bound_dev_if | 48 flow_label | 52 txhash | 56 keepalive_time
//	60 keepalive_intvl | 64 user_timeout (u32 each) | 68 tos | 69 tclass
//	70 keepalive_probes | 71 reserved
func decodeSeqRecords(b []byte) ([]seqRecord, error) {
	if len(b)%seqRecordLen != 0 {
		return nil, fmt.Errorf("%w: %d bytes", errSeqRecordLen, len(b))
	}
	recs := make([]seqRecord, len(b)/seqRecordLen)
	if _, err := binary.Decode(b, binary.NativeEndian, recs); err != nil {
		return nil, fmt.Errorf("decode iterator records: %w", err)
	}
	return recs, nil
}

// appendSeqRecord appends r in the iterator's format; the inverse of decodeSeqRecords.
func appendSeqRecord(b []byte, r seqRecord) []byte {
	b, err := binary.Append(b, binary.NativeEndian, r)
	if err != nil {
		panic(err) // seqRecord has fixed-size fields only
	}
	return b
}
