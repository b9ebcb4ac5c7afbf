package exporter

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// appendJSONNames are the members AppendJSON writes, in Session's order.
var appendJSONNames = []string{
	"netns", "netns_inode", "family", "state", "local", "remote", "cookie", "inode", "uid", "pid", "comm", "unit",
	"idle_seconds", "reasons", "verdict", "probes_sent", "replies", "rtt_seconds", "ghost", "killed", "probe_mode",
	"host_reachable", "closed_by_probe", "container", "ghost_seconds", "unprobeable", "kernel_deadline_seconds",
	"kernel_deadline_basis", "kernel_deadline_lower_bound", "nat", "uncertain",
	"container_name", "pod", "k8s_namespace", "host_hint", "guarded",
}

// Members of appendJSONNames, by index.
const (
	mNetns = iota
	mNetnsInode
	mFamily
	mState
	mLocal
	mRemote
	mCookie
	mInode
	mUid
	mPid
	mComm
	mUnit
	mIdleSeconds
	mReasons
	mVerdict
	mProbesSent
	mReplies
	mRttSeconds
	mGhost
	mKilled
	mProbeMode
	mHostReachable
	mClosedByProbe
	mContainer
	mGhostSeconds
	mUnprobeable
	mKernelDeadlineSeconds
	mKernelDeadlineBasis
	mKernelDeadlineLowerBound
	mNat
	mUncertain
	mContainerName
	mPod
	mK8sNamespace
	mHostHint
	mGuarded
	numMembers
)

// appendJSONKnows is whether AppendJSON writes every field of Session: a
// field added to Session without a line in AppendJSON makes it fall back
// to encoding/json (right, but slow) until it gets one, and
// TestAppendJSONKnowsEveryField fails meanwhile.
var appendJSONKnows = slices.Equal(sessionJSONNames(), appendJSONNames)

// sessionJSONNames returns the JSON names of Session's fields, in order.
func sessionJSONNames() []string {
	t := reflect.TypeFor[Session]()
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

// AppendJSON appends the session as json.MarshalIndent(s, prefix, indent)
// encodes it, byte for byte (TestSessionAppendJSON holds it to that for
// every field), at a tenth of the cost: `ghostd scan --all --json` encodes
// 200 000 sessions, and reflection and re-indenting were most of its time.
// An empty indent gives json.Marshal's compact form.
func (s *Session) AppendJSON(b []byte, prefix, indent string) ([]byte, error) {
	if !appendJSONKnows {
		return appendJSONSlow(b, s, prefix, indent)
	}
	w := jsonWriter{b: b, prefix: prefix, indent: indent, heads: headsFor(prefix, indent)}
	w.b = append(w.b, '{')
	w.str(mNetns, s.Netns)
	w.uint(mNetnsInode, s.NetnsInode)
	w.str(mFamily, s.Family)
	w.str(mState, s.State)
	w.str(mLocal, s.Local)
	w.str(mRemote, s.Remote)
	w.uint(mCookie, s.Cookie)
	w.uint(mInode, uint64(s.Inode))
	w.uint(mUid, uint64(s.UID))
	w.int(mPid, int64(s.PID))
	w.str(mComm, s.Comm)
	w.str(mUnit, s.Unit)
	w.float(mIdleSeconds, s.IdleSeconds)
	if s.unprobedQuiet() {
		w.b = append(w.b, w.heads.quiet...)
	} else {
		w.strs(mReasons, s.Reasons)
		w.str(mVerdict, s.Verdict)
		w.int(mProbesSent, int64(s.ProbesSent))
		w.int(mReplies, int64(s.Replies))
		orNull(&w, mRttSeconds, s.RTTSeconds, (*jsonWriter).float)
		w.bool(mGhost, s.Ghost)
		w.bool(mKilled, s.Killed)
		omitEmpty(&w, mProbeMode, s.ProbeMode, (*jsonWriter).str)
		orNull(&w, mHostReachable, s.HostReachable, (*jsonWriter).bool)
		w.bool(mClosedByProbe, s.ClosedByProbe)
	}
	omitEmpty(&w, mContainer, s.Container, (*jsonWriter).str)
	omitEmpty(&w, mGhostSeconds, s.GhostSeconds, (*jsonWriter).float)
	omitEmpty(&w, mUnprobeable, s.Unprobeable, (*jsonWriter).str)
	orNull(&w, mKernelDeadlineSeconds, s.KernelDeadlineSeconds, (*jsonWriter).float)
	omitEmpty(&w, mKernelDeadlineBasis, s.KernelDeadlineBasis, (*jsonWriter).str)
	omitEmpty(&w, mKernelDeadlineLowerBound, s.KernelDeadlineLowerBound, (*jsonWriter).bool)
	omitEmpty(&w, mNat, s.NAT, (*jsonWriter).str)
	omitEmpty(&w, mUncertain, s.Uncertain, (*jsonWriter).str)
	omitEmpty(&w, mContainerName, s.ContainerName, (*jsonWriter).str)
	omitEmpty(&w, mPod, s.Pod, (*jsonWriter).str)
	omitEmpty(&w, mK8sNamespace, s.K8sNamespace, (*jsonWriter).str)
	omitEmpty(&w, mHostHint, s.HostHint, (*jsonWriter).str)
	omitEmpty(&w, mGuarded, s.Guarded, (*jsonWriter).bool)
	w.newline(0)
	w.b = append(w.b, '}')
	return w.b, w.err
}

// unprobedQuiet says whether s is, from reasons to closed_by_probe, what
// nearly every session of a listing of every socket is: no reasons, never
// probed, neither ghost nor killed. AppendJSON then writes those ten
// members as one run of text (memberHeads.quiet).
func (s *Session) unprobedQuiet() bool {
	return s.Reasons != nil && len(s.Reasons) == 0 && s.Verdict == quietVerdict && s.ProbesSent == 0 && s.Replies == 0 &&
		s.RTTSeconds == nil && !s.Ghost && !s.Killed && s.ProbeMode == "" && s.HostReachable == nil && !s.ClosedByProbe
}

// quietVerdict is the verdict of an unprobed session (probe.Unprobed).
const quietVerdict = "unprobed"

// appendJSONSlow is AppendJSON through encoding/json.
func appendJSONSlow(b []byte, s *Session, prefix, indent string) ([]byte, error) {
	out, err := json.Marshal(s)
	if err != nil || indent == "" {
		return append(b, out...), err
	}
	var buf bytes.Buffer
	err = json.Indent(&buf, out, prefix, indent)
	return append(b, buf.Bytes()...), err
}

// jsonWriter appends one flat JSON object's members as encoding/json lays
// them out; values it has no fast path for go through encoding/json itself.
type jsonWriter struct {
	b              []byte
	prefix, indent string
	heads          *memberHeads
	err            error
}

// memberHeads holds, for one prefix and indent, what starts each member of
// appendJSONNames: the comma before it (none before the first, which is
// always written), the newline, prefix and indent, the quoted name and the
// colon, so that a member costs one append before its value instead of
// one per piece.
type memberHeads struct {
	prefix, indent string
	heads          [numMembers]string
	quiet          string // reasons to closed_by_probe of an unprobedQuiet session
}

// lastHeads are the heads of the last layout asked: scan --json asks one
// layout 200 000 times.
var lastHeads atomic.Pointer[memberHeads]

// headsFor returns the member heads of a layout.
func headsFor(prefix, indent string) *memberHeads {
	if h := lastHeads.Load(); h != nil && h.prefix == prefix && h.indent == indent {
		return h
	}
	h := &memberHeads{prefix: prefix, indent: indent}
	for i, name := range appendJSONNames {
		var b []byte
		if i > 0 {
			b = append(b, ',')
		}
		if indent != "" {
			b = append(append(append(b, '\n'), prefix...), indent...)
		}
		b = append(append(append(b, '"'), name...), '"', ':')
		if indent != "" {
			b = append(b, ' ')
		}
		h.heads[i] = string(b)
	}
	w := jsonWriter{prefix: prefix, indent: indent, heads: h}
	w.strs(mReasons, []string{})
	w.str(mVerdict, quietVerdict)
	w.int(mProbesSent, 0)
	w.int(mReplies, 0)
	w.null(mRttSeconds)
	w.bool(mGhost, false)
	w.bool(mKilled, false)
	w.null(mHostReachable)
	w.bool(mClosedByProbe, false)
	h.quiet = string(w.b)
	lastHeads.Store(h)
	return h
}

// newline starts a line at depth (json.Indent's layout); nothing when compact.
func (w *jsonWriter) newline(depth int) {
	if w.indent == "" {
		return
	}
	w.b = append(w.b, '\n')
	w.b = append(w.b, w.prefix...)
	for range depth {
		w.b = append(w.b, w.indent...)
	}
}

// key starts member m.
func (w *jsonWriter) key(m int) {
	w.b = append(w.b, w.heads.heads[m]...)
}

func (w *jsonWriter) str(m int, v string) {
	w.key(m)
	w.quote(v)
}

// omitEmpty writes v with write unless it is its type's zero value: a field
// tagged omitempty.
func omitEmpty[T comparable](w *jsonWriter, m int, v T, write func(*jsonWriter, int, T)) {
	var zero T
	if v != zero {
		write(w, m, v)
	}
}

// orNull writes *v with write, or null when v is nil.
func orNull[T any](w *jsonWriter, m int, v *T, write func(*jsonWriter, int, T)) {
	if v == nil {
		w.null(m)
		return
	}
	write(w, m, *v)
}

// quote appends v as a JSON string. Text that needs no escaping (the usual
// case: names, addresses, states) is copied; anything else is escaped by
// encoding/json, so its rules (HTML characters, U+2028, invalid UTF-8)
// hold exactly.
func (w *jsonWriter) quote(v string) {
	for i := 0; i < len(v); i++ {
		if !plainJSON[v[i]] {
			w.marshal(v)
			return
		}
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, v...)
	w.b = append(w.b, '"')
}

// plainJSON says which bytes encoding/json copies into a string as they
// are: printable ASCII but the quote, the backslash and the HTML
// characters. A table: a listing checks some 80 bytes a session.
var plainJSON = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

func (w *jsonWriter) marshal(v any) {
	out, err := json.Marshal(v)
	if err != nil && w.err == nil {
		w.err = err
	}
	w.b = append(w.b, out...)
}

func (w *jsonWriter) uint(m int, v uint64) {
	w.key(m)
	w.b = strconv.AppendUint(w.b, v, 10)
}

func (w *jsonWriter) int(m int, v int64) {
	w.key(m)
	w.b = strconv.AppendInt(w.b, v, 10)
}

func (w *jsonWriter) bool(m int, v bool) {
	w.key(m)
	w.b = strconv.AppendBool(w.b, v)
}

func (w *jsonWriter) null(m int) {
	w.key(m)
	w.b = append(w.b, "null"...)
}

// float appends v as encoding/json does: the shortest decimal form, which
// it uses from 1e-6 up to 1e21; it alone handles exponents (and rejects NaN
// and infinities).
func (w *jsonWriter) float(m int, v float64) {
	w.key(m)
	if ms := math.Round(v * 1000); ms/1000 == v && ms >= 1 && ms < 1e15 {
		w.b = appendMillis(w.b, uint64(ms))
		return
	}
	if a := math.Abs(v); a == 0 || (a >= 1e-6 && a < 1e21) {
		w.b = strconv.AppendFloat(w.b, v, 'f', -1, 64)
		return
	}
	w.marshal(v)
}

// appendMillis appends ms/1000 in decimal, no trailing zeros: the shortest
// form of the float64 nearest to it, so what AppendFloat writes for it, at
// a fraction of the cost. Idle times are milliseconds from tcp_info, and a
// listing of every socket writes 200 000 of them. The decimal has at most
// 15 digits (ms < 1e15): no shorter one is as near to that float64.
func appendMillis(b []byte, ms uint64) []byte {
	b = strconv.AppendUint(b, ms/1000, 10)
	frac := ms % 1000
	if frac == 0 {
		return b
	}
	digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
	n := 3
	for digits[n-1] == '0' {
		n--
	}
	return append(append(b, '.'), digits[:n]...)
}

func (w *jsonWriter) strs(m int, v []string) {
	w.key(m)
	switch {
	case v == nil:
		w.b = append(w.b, "null"...)
		return
	case len(v) == 0:
		w.b = append(w.b, '[', ']')
		return
	}
	w.b = append(w.b, '[')
	for i, s := range v {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.newline(2)
		w.quote(s)
	}
	w.newline(1)
	w.b = append(w.b, ']')
}
