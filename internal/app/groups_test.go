package app

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/exporter"
)

func groupsDoc() *exporter.Document {
	return &exporter.Document{
		ScannedAt:  time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC),
		Namespaces: []exporter.NamespaceStatus{{Netns: "host", Sockets: 40}},
		Sessions: []exporter.Session{
			{Local: "192.0.2.1:5432", Remote: "198.51.100.7:40000", Comm: "postgres", Unit: "postgresql.service", Ghost: true, Verdict: "silent"},
			{Local: "192.0.2.1:5432", Remote: "198.51.100.8:40001", Comm: "postgres", Unit: "postgresql.service", Verdict: "alive"},
			{Local: "192.0.2.1:41000", Remote: "203.0.113.5:6379", Comm: "evil\x1b[2J", Ghost: true, Verdict: "reset"},
			{Local: "192.0.2.1:41001", Remote: "203.0.113.6:6379", Comm: "evil\x1b[2J", Killed: true, Verdict: "reset"},
		},
	}
}

func TestWriteGroupsTable(t *testing.T) {
	for _, tt := range []struct {
		by   exporter.GroupBy
		want string
	}{
		{exporter.ByOwner, "" +
			"OWNER               GHOSTS  SUSPECTS  KILLED\n" +
			"postgresql.service  1       2         0\n" +
			"evil\\x1b[2J         1       1         1\n" +
			"2 groups by owner, 4 sessions listed, 2 ghosts, 40 sockets in 1 namespaces, probes in_window\n"},
		{exporter.ByDestination, "" +
			"DESTINATION      PORT          GHOSTS  SUSPECTS  KILLED\n" +
			"198.51.100.0/24  5432 (local)  1       2         0\n" +
			"203.0.113.0/24   6379          1       1         1\n" +
			"2 groups by destination, 4 sessions listed, 2 ghosts, 40 sockets in 1 namespaces, probes in_window\n"},
	} {
		var out, errb bytes.Buffer
		if code := writeGroups(&out, &errb, groupsDoc(), listOf(groupsDoc()), tt.by, false, "in_window"); code != ExitOK {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		if diff := cmp.Diff(tt.want, out.String()); diff != "" {
			t.Errorf("by %s (-want +got):\n%s", tt.by, diff)
		}
	}
}

func TestWriteGroupsJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if code := writeGroups(&out, &errb, groupsDoc(), listOf(groupsDoc()), exporter.ByOwner, true, "in_window"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var got exporter.GroupsDocument
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := exporter.GroupsDocument{ScannedAt: groupsDoc().ScannedAt, By: exporter.ByOwner, Groups: []exporter.Group{
		{Owner: "postgresql.service", Ghosts: 1, Suspects: 2},
		{Owner: "evil\x1b[2J", Ghosts: 1, Suspects: 1, Killed: 1},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// listOf lists a document's sessions as the scan streams them, two at a time.
func listOf(doc *exporter.Document) eachSessions {
	return func(fn func([]exporter.Session) bool) {
		for s := doc.Sessions; len(s) > 0; s = s[min(2, len(s)):] {
			if !fn(s[:min(2, len(s))]) {
				return
			}
		}
	}
}
