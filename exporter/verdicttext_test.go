package exporter

import (
	"encoding/json"
	"strings"
	"testing"
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
	} {
		if got := tc.s.VerdictText(); got != tc.text {
			t.Errorf("VerdictText(%+v) = %q, want %q", tc.s, got, tc.text)
		}
		b, err := json.Marshal(tc.s)
		if err != nil {
			t.Fatal(err)
		}
		if tc.json == "" && strings.Contains(string(b), "unprobeable") || tc.json != "" && !strings.Contains(string(b), tc.json) {
			t.Errorf("JSON of %+v: %s, want %q", tc.s, b, tc.json)
		}
	}
}
