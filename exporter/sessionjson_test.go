package exporter

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// filled returns a session with every field set from seed: strings, numbers
// and flags non-zero (so omitempty fields appear), pointers non-nil.
func filled(t *testing.T, str string, f float64, seed int) Session {
	t.Helper()
	var s Session
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.String:
			fv.SetString(str)
		case reflect.Int:
			fv.SetInt(int64(seed + i))
		case reflect.Uint32, reflect.Uint64:
			fv.SetUint(uint64(seed+i) << (8 * (i % 4)))
		case reflect.Float64:
			fv.SetFloat(f * float64(i))
		case reflect.Bool:
			fv.SetBool(true)
		case reflect.Slice:
			fv.Set(reflect.ValueOf([]string{str, "idle"}))
		case reflect.Pointer:
			p := reflect.New(fv.Type().Elem())
			switch p.Elem().Kind() {
			case reflect.Float64:
				p.Elem().SetFloat(f)
			case reflect.Bool:
				p.Elem().SetBool(seed%2 == 0)
			default:
				t.Fatalf("field %s: AppendJSON and this test know no %s pointer", v.Type().Field(i).Name, fv.Type())
			}
			fv.Set(p)
		default:
			t.Fatalf("field %s: AppendJSON and this test know no %s", v.Type().Field(i).Name, fv.Type())
		}
	}
	return s
}

func checkAppendJSON(t *testing.T, s *Session) {
	t.Helper()
	for _, l := range []struct{ prefix, indent string }{{"", ""}, {"", "  "}, {"    ", "  "}, {"\t", "\t"}} {
		want, wantErr := json.MarshalIndent(s, l.prefix, l.indent)
		if l.prefix == "" && l.indent == "" {
			want, wantErr = json.Marshal(s)
		}
		got, err := s.AppendJSON([]byte("x"), l.prefix, l.indent)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("prefix %q indent %q: error %v, encoding/json's %v", l.prefix, l.indent, err, wantErr)
		}
		if err == nil && string(got) != "x"+string(want) {
			t.Fatalf("prefix %q indent %q: AppendJSON\n%s\nencoding/json\n%s", l.prefix, l.indent, got[1:], want)
		}
	}
}

// TestSessionAppendJSON: AppendJSON writes what encoding/json writes, for a
// session with every field set (a field added to Session that AppendJSON
// does not encode fails here), for the zero session (nulls, omitted
// fields), and for text that needs escaping.
func TestSessionAppendJSON(t *testing.T) {
	for _, s := range []Session{
		filled(t, "host", 412.5, 1),
		filled(t, "<b>&\"\\\x00\x1b\u2028é\xff", 1e-9, 2),
		filled(t, "", 1e22, 3),
		filled(t, "x", -0.0001, 4),
		{},
		{Reasons: []string{}},
		// A healthy socket of scan --all, and each way of not being one.
		{Reasons: []string{}, Verdict: "unprobed"},
		{Verdict: "unprobed"},
		{Reasons: []string{"idle"}, Verdict: "unprobed"},
		{Reasons: []string{}, Verdict: "alive"},
		{Reasons: []string{}, Verdict: "unprobed", ProbesSent: 1},
		{Reasons: []string{}, Verdict: "unprobed", Replies: 1},
		{Reasons: []string{}, Verdict: "unprobed", RTTSeconds: new(float64)},
		{Reasons: []string{}, Verdict: "unprobed", Ghost: true},
		{Reasons: []string{}, Verdict: "unprobed", Killed: true},
		{Reasons: []string{}, Verdict: "unprobed", ProbeMode: "blind"},
		{Reasons: []string{}, Verdict: "unprobed", HostReachable: new(bool)},
		{Reasons: []string{}, Verdict: "unprobed", ClosedByProbe: true},
	} {
		checkAppendJSON(t, &s)
	}
	s := filled(t, "nan", math.NaN(), 5)
	if _, err := s.AppendJSON(nil, "", "  "); err == nil {
		t.Error("AppendJSON encoded NaN without an error, as encoding/json refuses to")
	}
}

// TestAppendJSONMillis: a float that is a whole number of milliseconds
// (an idle time from tcp_info) comes out as encoding/json writes it, over
// every millisecond of the first 100 s, around powers of ten, and at
// random up to tcp_info's 2^32 ms.
func TestAppendJSONMillis(t *testing.T) {
	var ms []uint64
	for i := range uint64(100_000) {
		ms = append(ms, i)
	}
	for p := uint64(1); p < 1e15; p *= 10 {
		ms = append(ms, p-1, p, p+1, 999*p+1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		ms = append(ms, rng.Uint64N(1<<32))
	}
	for _, m := range ms {
		v := float64(m) / 1000
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		w := jsonWriter{heads: headsFor("", "")}
		w.float(mIdleSeconds, v)
		if got := string(w.b[len(w.heads.heads[mIdleSeconds]):]); got != string(want) {
			t.Fatalf("%d ms: %s, encoding/json writes %s", m, got, want)
		}
	}
}

// TestAppendJSONKnowsEveryField: AppendJSON has a line for every field of
// Session. A field added without one still comes out right (encoding/json
// takes over), but `ghostd scan --all --json` gets several times slower.
func TestAppendJSONKnowsEveryField(t *testing.T) {
	if diff := cmp.Diff(sessionJSONNames(), appendJSONNames); diff != "" {
		t.Errorf("Session's JSON fields (-Session +appendJSONNames); give AppendJSON a line for each new one:\n%s", diff)
	}
	if !appendJSONKnows {
		t.Error("AppendJSON falls back to encoding/json")
	}
}

// TestAppendJSONSlow: the fallback writes what encoding/json writes.
func TestAppendJSONSlow(t *testing.T) {
	s := filled(t, "<x>", 0.5, 3)
	for _, l := range []struct{ prefix, indent string }{{"", ""}, {"    ", "  "}} {
		want, _ := json.MarshalIndent(&s, l.prefix, l.indent)
		if l.indent == "" {
			want, _ = json.Marshal(&s)
		}
		got, err := appendJSONSlow([]byte("x"), &s, l.prefix, l.indent)
		if err != nil || string(got) != "x"+string(want) {
			t.Errorf("indent %q: %s, %v; want %s", l.indent, got, err, want)
		}
	}
	// AppendJSON takes it when it does not know every field.
	knows := appendJSONKnows
	appendJSONKnows = false
	defer func() { appendJSONKnows = knows }()
	checkAppendJSON(t, &s)
	zero := Session{}
	checkAppendJSON(t, &zero)
}

func FuzzSessionAppendJSON(f *testing.F) {
	f.Add("postgres", 0.25, 7)
	f.Add("<&>\u2029", 3e-7, 0)
	f.Fuzz(func(t *testing.T, str string, x float64, seed int) {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return
		}
		s := filled(t, str, x, seed)
		checkAppendJSON(t, &s)
	})
}

func TestVerdictTextAndUnprobeableJSON(t *testing.T) {
	for _, tc := range []struct {
		s    Session
		text string
		json string // "" when the key must be absent
	}{
		{Session{Verdict: "alive"}, "alive", ""},
		{Session{Verdict: "unprobed", Unprobeable: "tcp_md5"}, "unprobed (tcp-md5)", `"unprobeable":"tcp_md5"`},
		{Session{Verdict: "unprobed", Unprobeable: "tcp_ao"}, "unprobed (tcp-ao)", `"unprobeable":"tcp_ao"`},
		{Session{Verdict: "silent", Uncertain: "interference"}, "silent (uncertain: interference)", `"uncertain":"interference"`},
		{Session{Verdict: "unreachable", Uncertain: "capture_lost"}, "unreachable (uncertain: capture lost)", `"uncertain":"capture_lost"`},
	} {
		if got := tc.s.VerdictText(); got != tc.text {
			t.Errorf("VerdictText(%+v) = %q, want %q", tc.s, got, tc.text)
		}
		b, err := json.Marshal(tc.s)
		if err != nil {
			t.Fatal(err)
		}
		if tc.json == "" && (strings.Contains(string(b), "unprobeable") || strings.Contains(string(b), "uncertain")) || tc.json != "" && !strings.Contains(string(b), tc.json) {
			t.Errorf("JSON of %+v: %s, want %q", tc.s, b, tc.json)
		}
	}
}

// TestPageShowsUnprobeable: the page prints an unprobeable session's verdict
// with its reason.
func TestPageShowsUnprobeable(t *testing.T) {
	s := NewStore(testBld, func() time.Time { return t0 })
	snap := fixtureSnapshot()
	for i := range snap.Doc.Sessions {
		if snap.Doc.Sessions[i].Cookie == 13 { // the healthy suspect
			snap.Doc.Sessions[i].Verdict, snap.Doc.Sessions[i].Unprobeable = "unprobed", "tcp_md5"
		}
	}
	s.Publish(snap)
	rec := get(t, NewHandler(s, HandlerOptions{}), "/")
	if body := rec.Body.String(); !strings.Contains(body, "unprobed (tcp-md5)") {
		t.Errorf("page lacks %q:\n%s", "unprobed (tcp-md5)", body)
	}
}
