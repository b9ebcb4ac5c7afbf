package app

import (
	"strings"
	"testing"

	"github.com/ghostd/ghostd/exporter"
)

func TestTermSafe(t *testing.T) {
	for in, want := range map[string]string{
		"postgres":          "postgres",
		"pid-my app-600":    "pid-my app-600",
		"naïve-ünïcode":     "naïve-ünïcode",
		"\x1b[2J\x1b[Hevil": `\x1b[2J\x1b[Hevil`,
		"tab\there":         `tab\there`,
		"line\nbreak\r":     `line\nbreak\r`,
		"bad\xff\xfeutf8":   `bad\xff\xfeutf8`,
		"del\x7f":           `del\x7f`,
		"c1\u009bcsi":       `c1\u009bcsi`,
		"sep\u2028":         `sep\u2028`,
		"":                  "",
	} {
		if got := termSafe(in); got != want {
			t.Errorf("termSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzTermSafe(f *testing.F) {
	for _, s := range []string{"postgres", "\x1b[31mred", "bad\xff", "ok\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := termSafe(s)
		for _, r := range out {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' || r == '\uFFFD' && !containsRune(s, '\uFFFD') {
				t.Fatalf("termSafe(%q) = %q keeps %U", s, out, r)
			}
		}
	})
}

func containsRune(s string, r rune) bool {
	for _, c := range s {
		if c == r {
			return true
		}
	}
	return false
}

// The scan table never prints a name or comm raw: an escape sequence in a
// comm (prctl(PR_SET_NAME)) or a namespace name arrives escaped.
func TestWriteTableEscapes(t *testing.T) {
	doc := &exporter.Document{
		Namespaces: []exporter.NamespaceStatus{{Netns: "evil\x1b[2J", Sockets: 1, Error: "gone\x07"}},
		Sessions: []exporter.Session{{Netns: "evil\x1b[2J", State: "ESTABLISHED", Local: "192.0.2.1:1", Remote: "192.0.2.2:2",
			Verdict: "alive", Comm: "x\x1b]0;pwned\x07", PID: 7}},
	}
	var b strings.Builder
	writeTable(&b, doc, "in_window")
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("table carries raw control characters:\n%q", out)
	}
	for _, want := range []string{`evil\x1b[2J`, `x\x1b]0;pwned\a[7]`, `gone\a`} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
