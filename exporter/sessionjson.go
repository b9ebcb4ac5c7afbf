package exporter

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// appendJSONNames are the members AppendJSON writes, in Session's order.
var appendJSONNames = []string{
	"netns", "netns_inode", "family", "state", "local", "remote", "cookie", "inode", "uid", "pid", "comm", "unit",
	"idle_seconds", "reasons", "verdict", "probes_sent", "replies", "rtt_seconds", "ghost", "killed", "probe_mode",
	"host_reachable", "closed_by_probe", "container", "ghost_seconds", "unprobeable", "kernel_deadline_seconds",
	"kernel_deadline_basis", "kernel_deadline_lower_bound", "nat", "uncertain",
	"container_name", "pod", "k8s_namespace", "host_hint", "guarded",
}

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
	w := jsonWriter{b: b, prefix: prefix, indent: indent}
	w.b = append(w.b, '{')
	w.str("netns", s.Netns)
	w.uint("netns_inode", s.NetnsInode)
	w.str("family", s.Family)
	w.str("state", s.State)
	w.str("local", s.Local)
	w.str("remote", s.Remote)
	w.uint("cookie", s.Cookie)
	w.uint("inode", uint64(s.Inode))
	w.uint("uid", uint64(s.UID))
	w.int("pid", int64(s.PID))
	w.str("comm", s.Comm)
	w.str("unit", s.Unit)
	w.float("idle_seconds", s.IdleSeconds)
	w.strs("reasons", s.Reasons)
	w.str("verdict", s.Verdict)
	w.int("probes_sent", int64(s.ProbesSent))
	w.int("replies", int64(s.Replies))
	w.floatPtr("rtt_seconds", s.RTTSeconds)
	w.bool("ghost", s.Ghost)
	w.bool("killed", s.Killed)
	w.strOmitEmpty("probe_mode", s.ProbeMode)
	if s.HostReachable == nil {
		w.null("host_reachable")
	} else {
		w.bool("host_reachable", *s.HostReachable)
	}
	w.bool("closed_by_probe", s.ClosedByProbe)
	w.strOmitEmpty("container", s.Container)
	if s.GhostSeconds != 0 {
		w.float("ghost_seconds", s.GhostSeconds)
	}
	w.strOmitEmpty("unprobeable", s.Unprobeable)
	w.floatPtr("kernel_deadline_seconds", s.KernelDeadlineSeconds)
	w.strOmitEmpty("kernel_deadline_basis", s.KernelDeadlineBasis)
	if s.KernelDeadlineLowerBound {
		w.bool("kernel_deadline_lower_bound", true)
	}
	w.strOmitEmpty("nat", s.NAT)
	w.strOmitEmpty("uncertain", s.Uncertain)
	w.strOmitEmpty("container_name", s.ContainerName)
	w.strOmitEmpty("pod", s.Pod)
	w.strOmitEmpty("k8s_namespace", s.K8sNamespace)
	w.strOmitEmpty("host_hint", s.HostHint)
	if s.Guarded {
		w.bool("guarded", true)
	}
	w.newline(0)
	w.b = append(w.b, '}')
	return w.b, w.err
}

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
	n              int // members written
	err            error
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

func (w *jsonWriter) key(k string) {
	if w.n > 0 {
		w.b = append(w.b, ',')
	}
	w.n++
	w.newline(1)
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
	if w.indent != "" {
		w.b = append(w.b, ' ')
	}
}

func (w *jsonWriter) str(k, v string) {
	w.key(k)
	w.quote(v)
}

// strOmitEmpty is str for a field tagged omitempty: nothing when v is "".
func (w *jsonWriter) strOmitEmpty(k, v string) {
	if v != "" {
		w.str(k, v)
	}
}

// quote appends v as a JSON string. Text that needs no escaping (the usual
// case: names, addresses, states) is copied; anything else is escaped by
// encoding/json, so its rules (HTML characters, U+2028, invalid UTF-8)
// hold exactly.
func (w *jsonWriter) quote(v string) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			w.marshal(v)
			return
		}
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, v...)
	w.b = append(w.b, '"')
}

func (w *jsonWriter) marshal(v any) {
	out, err := json.Marshal(v)
	if err != nil && w.err == nil {
		w.err = err
	}
	w.b = append(w.b, out...)
}

func (w *jsonWriter) uint(k string, v uint64) {
	w.key(k)
	w.b = strconv.AppendUint(w.b, v, 10)
}

func (w *jsonWriter) int(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
}

func (w *jsonWriter) bool(k string, v bool) {
	w.key(k)
	w.b = strconv.AppendBool(w.b, v)
}

func (w *jsonWriter) null(k string) {
	w.key(k)
	w.b = append(w.b, "null"...)
}

// float appends v as encoding/json does: the shortest decimal form, which
// it uses from 1e-6 up to 1e21; it alone handles exponents (and rejects NaN
// and infinities).
func (w *jsonWriter) float(k string, v float64) {
	w.key(k)
	if a := math.Abs(v); a == 0 || (a >= 1e-6 && a < 1e21) {
		w.b = strconv.AppendFloat(w.b, v, 'f', -1, 64)
		return
	}
	w.marshal(v)
}

func (w *jsonWriter) floatPtr(k string, v *float64) {
	if v == nil {
		w.null(k)
		return
	}
	w.float(k, *v)
}

func (w *jsonWriter) strs(k string, v []string) {
	w.key(k)
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
