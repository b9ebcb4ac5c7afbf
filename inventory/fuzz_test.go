package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parseResult is everything a parse makes observable.
type parseResult struct {
	Sockets []Socket
	Done    bool
	Err     string
}

func parseResultOf(b []byte, stopAfter int) parseResult {
	var r parseResult
	var s Socket
	stop := errors.New("stop")
	done, err := ParseDump(b, 3, &s, func(s *Socket) error {
		r.Sockets = append(r.Sockets, *s)
		if len(r.Sockets) == stopAfter {
			return stop
		}
		return nil
	})
	r.Done = done
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// FuzzParseDump checks that ParseDump never panics, reports only the errors
// it documents, reads no byte beyond a message's nlmsg_len, and that every
// socket it decodes survives an encode/decode round trip.
func FuzzParseDump(f *testing.F) {
	files, _ := filepath.Glob("testdata/dump-*.bin")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ss := sampleSockets()
	for i := range ss {
		f.Add(encodeSocket(nil, &ss[i], 1))
	}
	f.Add(errorMsg(1, syscall.EPERM))
	f.Add(doneMsg(1, -int32(syscall.EINTR)))

	f.Fuzz(func(t *testing.T, b []byte) {
		var s Socket
		var got []Socket
		done, err := ParseDump(b, 3, &s, func(s *Socket) error {
			got = append(got, *s)
			return nil
		})
		var errno syscall.Errno
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.As(err, &errno) {
			t.Fatalf("undocumented error %v", err)
		}
		if errors.As(err, &errno) && !done {
			t.Fatalf("a kernel error %v must end the dump", err)
		}

		// Locality: once the first socket is decoded and the callback
		// stops, nothing after its message may matter.
		if len(got) > 0 {
			first := parseResultOf(b, 1)
			end := endOfMessageOf(b, &first.Sockets[0])
			if end > 0 {
				c := append([]byte(nil), b...)
				for i := end; i < len(c); i++ {
					c[i] ^= 0xa5
				}
				if diff := cmp.Diff(first, parseResultOf(c, 1), socketCmp); diff != "" {
					t.Fatalf("bytes after the first message changed its result (-want +got):\n%s", diff)
				}
			}
		}

		// Padding between nlmsg_len and the next aligned header is not read.
		if c, ok := scramblePadding(b); ok {
			if diff := cmp.Diff(parseResultOf(b, -1), parseResultOf(c, -1), socketCmp); diff != "" {
				t.Fatalf("message padding changed the result (-want +got):\n%s", diff)
			}
		}

		// Round trip: decode(encode(s)) == s.
		for i := range got {
			enc := encodeSocket(nil, &got[i], 1)
			back, _, err := parseAll(enc, 3)
			if err != nil || len(back) != 1 {
				t.Fatalf("re-decoding %+v: %d sockets, %v", got[i], len(back), err)
			}
			if diff := cmp.Diff(got[i], back[0], socketCmp); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		}
	})
}

// endOfMessageOf returns the offset just past the aligned message that the
// first SOCK_DIAG_BY_FAMILY decode came from, or 0 if the walk fails.
func endOfMessageOf(b []byte, _ *Socket) int {
	off := 0
	for len(b)-off >= nlmsgHdrLen {
		l := int(ne.Uint32(b[off:]))
		if l < nlmsgHdrLen || l > len(b)-off {
			return 0
		}
		next := off + min(align4(l), len(b)-off)
		if t := ne.Uint16(b[off+4:]); t == sockDiagByFamily || t == tcpdiagGetSock {
			return next
		}
		off = next
	}
	return 0
}

// scramblePadding flips the alignment padding after every message.
func scramblePadding(b []byte) ([]byte, bool) {
	c := append([]byte(nil), b...)
	changed := false
	off := 0
	for len(c)-off >= nlmsgHdrLen {
		l := int(ne.Uint32(c[off:]))
		if l < nlmsgHdrLen || l > len(c)-off {
			break
		}
		next := off + min(align4(l), len(c)-off)
		for i := off + l; i < next; i++ {
			c[i] ^= 0x5a
			changed = true
		}
		off = next
	}
	return c, changed
}
