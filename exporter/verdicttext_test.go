package exporter

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

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
