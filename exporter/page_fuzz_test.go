package exporter

import (
	"strings"
	"testing"
	"time"

	"github.com/ghostd/ghostd/events"
)

// FuzzPageEscaping renders the page with hostile strings in every field that
// comes from the network or from other processes. Property: the markup is
// the same as when the same strings are rendered with their markup
// characters (< > & " ') replaced by letters. The two inputs are equal in
// everything the template decides on (emptiness, length, known values), so
// only untrusted text turning into markup can make the pages differ.
func FuzzPageEscaping(f *testing.F) {
	for _, seed := range [][4]string{
		{"postgres", "postgresql.service", "192.0.2.1:5432", "host"},
		{"<script>alert(1)</script>", "a\"onmouseover=\"x", "<img src=x onerror=alert(1)>", "pid-<b>-1"},
		{"</td></tr></table>", "&lt;", "'><svg/onload=1>", "\x00\xff"},
		{"0", "", "0", "0"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	render := func(t *testing.T, comm, unit, remote, netns string) string {
		snap := fixtureSnapshot()
		for i := range snap.Doc.Sessions {
			ss := &snap.Doc.Sessions[i]
			ss.Comm, ss.Unit, ss.Container, ss.Remote, ss.Local, ss.Netns, ss.State = comm, unit, unit, remote, remote, netns, netns
			ss.Reasons = []string{comm, unit}
			ss.Verdict = comm
		}
		for i := range snap.Doc.Namespaces {
			ns := &snap.Doc.Namespaces[i]
			ns.Netns, ns.Error, ns.Kind = netns+string(rune('a'+i)), unit, comm
		}
		snap.ProbeMode = "in_window" // ours, not untrusted
		d := buildPage(snap, BuildInfo{Version: unit}, t0)
		rec, err := events.NewRecorder(events.Config{RingSize: 4, FileMaxBytes: events.MinFileMaxBytes, FilesKept: 1}, func() time.Time { return t0 }, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range events.Kinds {
			rec.Emit(events.Event{Kind: k, Netns: netns, Local: remote, Remote: remote, Comm: comm, Unit: unit, Verdict: comm, Result: comm, Detail: unit})
		}
		addEvents(d, rec)
		var b strings.Builder
		if err := pageTmpl.Execute(&b, d); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	defang := strings.NewReplacer("<", "L", ">", "G", "&", "A", `"`, "Q", "'", "S")
	markup := func(page string) int { return strings.Count(page, "<") }
	f.Fuzz(func(t *testing.T, comm, unit, remote, netns string) {
		got := markup(render(t, comm, unit, remote, netns))
		want := markup(render(t, defang.Replace(comm), defang.Replace(unit), defang.Replace(remote), defang.Replace(netns)))
		if got != want {
			t.Errorf("page has %d '<', %d with the markup characters of the input replaced: untrusted text became markup", got, want)
		}
	})
}
