package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/exporter"
)

// TestEventsAndOwners: on the test network two clients vanish and one
// stays healthy. `ghostd scan --by owner` prints the owner's row with two
// ghosts out of three suspects; then a daemon with the kill policy on
// records, for each ghost, suspect, ghost, killed (ok) and gone, in that
// order, and for the healthy connection a suspect and nothing else, in
// /api/v1/events, in its JSONL file and in ghostd_events_total.
func TestEventsAndOwners(t *testing.T) {
	n, cs := idleNet(t, "tcp4", "tcp6", "tcp4")
	ghost4, ghost6, idle := cs[0], cs[1], cs[2]
	n.DropFromClient(t, ghost4.c)
	n.LoseState(t, ghost6.c)
	time.Sleep(2500 * time.Millisecond) // past --idle 2s

	// Who owns the sessions, as ghostd names owners.
	doc, out := scanDoc(t, "scan", "--netns", n.Server.Name, "--idle", "2s", "--no-probe", "--json")
	if len(doc.Sessions) != 3 {
		t.Fatalf("scan --json: %d sessions, want 3:\n%s", len(doc.Sessions), out)
	}
	owner := exporter.OwnerOf(&doc.Sessions[0])
	if owner == "unknown" {
		t.Fatalf("the test's own sockets have no owner: %+v", doc.Sessions[0])
	}

	args := []string{"scan", "--netns", n.Server.Name, "--idle", "2s", "--probe-interval", "1s", "--by", "owner"}
	table := scanTable(t, args...)
	row := strings.Fields(lineStarting(table, owner+" "))
	if want := []string{owner, "2", "3", "0"}; strings.Join(row, " ") != strings.Join(want, " ") {
		t.Errorf("scan --by owner: row %q, want %q:\n%s", row, want, table)
	}

	file := filepath.Join(t.TempDir(), "events.jsonl")
	d := startDaemon(t, "", "--netns", n.Server.Name, "--interval", "1s", "--idle", "2s", "--probe-interval", "1s",
		"--kill", "--kill-min-age", "4s", "--events.file", file)
	keys := map[string]string{rowKey(ghost4.s): "ghost v4", rowKey(ghost6.s): "ghost v6", rowKey(idle.s): "healthy"}
	want := map[string][]string{
		"ghost v4": {"suspect", "ghost", "killed ok", "gone"},
		"ghost v6": {"suspect", "ghost", "killed ok", "gone"},
		"healthy":  {"suspect"},
	}
	var page events.Page
	sawByOwner := false
	waitFor(t, 40*time.Second, "every ghost suspect, ghost, killed and gone", func() (bool, string) {
		code, b, err := d.get("/api/v1/events?netns=" + n.Server.Name)
		if err != nil || code != http.StatusOK {
			return false, fmt.Sprintf("%d %v %s", code, err, b)
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return false, err.Error()
		}
		if !sawByOwner {
			if mfs, err := d.metrics(); err == nil {
				v, ok := value(mfs, "ghostd_ghost_sessions_by_owner", map[string]string{"owner": owner})
				sawByOwner = ok && v == 2
			}
		}
		got := history(page.Events, keys)
		return got["ghost v4"][len(got["ghost v4"])-1] == "gone" && got["ghost v6"][len(got["ghost v6"])-1] == "gone",
			fmt.Sprintf("%v", got)
	})
	got := history(page.Events, keys)
	for name, w := range want {
		if g := got[name]; !isOrderedKinds(g, w) {
			t.Errorf("%s: events %v, want %v in this order (refusals allowed before the kill)", name, g, w)
		}
	}
	if !sawByOwner {
		t.Errorf("ghostd_ghost_sessions_by_owner{owner=%q} never showed 2", owner)
	}
	for _, e := range page.Events {
		if keys[fmt.Sprintf("%s %s", e.Local, e.Remote)] == "" {
			continue
		}
		if e.Netns != n.Server.Name || e.NetnsInode != n.Server.Inode || e.Cookie == 0 || e.PID == 0 || e.Owner() != owner || len(e.Reasons) == 0 {
			t.Errorf("incomplete event: %+v", e)
		}
		if e.Kind == events.Ghost && (e.Verdict != "silent" || e.Attempts == 0) {
			t.Errorf("ghost event without its evidence: %+v", e)
		}
	}
	excerpt, _ := json.MarshalIndent(page.Events, "", "  ")
	t.Logf("/api/v1/events?netns=%s:\n%s", n.Server.Name, excerpt)

	// Filters on the real daemon.
	code, b, err := d.get("/api/v1/events?netns=" + n.Server.Name + "&kind=killed&owner=" + owner)
	var killed events.Page
	if err != nil || code != http.StatusOK || json.Unmarshal(b, &killed) != nil {
		t.Fatalf("kind=killed: %d %v %s", code, err, b)
	}
	ok := 0
	for _, e := range killed.Events {
		if e.Kind != events.Killed {
			t.Errorf("kind=killed returned %s", e.Kind)
		}
		if e.Result == events.ResultOK {
			ok++
		}
	}
	if ok != 2 {
		t.Errorf("kind=killed: %d ok, want 2: %+v", ok, killed.Events)
	}

	// Groups on the real daemon: the killed ghosts stay listed as killed.
	code, b, err = d.get("/api/v1/groups?by=owner&netns=" + n.Server.Name)
	var groups exporter.GroupsDocument
	if err != nil || code != http.StatusOK || json.Unmarshal(b, &groups) != nil {
		t.Fatalf("groups: %d %v %s", code, err, b)
	}
	if want := []exporter.Group{{Owner: owner, Suspects: 1, Killed: 2}}; fmt.Sprint(groups.Groups) != fmt.Sprint(want) {
		t.Errorf("/api/v1/groups?by=owner: %+v, want %+v", groups.Groups, want)
	}

	// The JSONL file holds the same events as the ring.
	mfs, err := d.metrics()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	bySeq := map[uint64]events.Event{}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e events.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("events file: %v: %s", err, sc.Bytes())
		}
		bySeq[e.Seq] = e
	}
	for _, e := range page.Events {
		fe, ok := bySeq[e.Seq]
		if !ok || fe.Kind != e.Kind || fe.Cookie != e.Cookie || !fe.Time.Equal(e.Time) {
			t.Errorf("event %d: file has %+v, API %+v", e.Seq, fe, e)
		}
	}
	for _, k := range []string{"suspect", "ghost", "killed", "gone"} {
		if v, ok := value(mfs, "ghostd_events_total", map[string]string{"kind": k}); !ok || v < 2 {
			t.Errorf("ghostd_events_total{kind=%q} = %v (present %v), want at least 2", k, v, ok)
		}
	}
	if v, ok := value(mfs, "ghostd_events_dropped_total", map[string]string{"where": "file"}); !ok || v != 0 {
		t.Errorf("ghostd_events_dropped_total{where=file} = %v (present %v), want 0", v, ok)
	}
	roundTrip(t, &scenario{name: "healthy after the kills", server: idle.s, client: idle.c})
}

// history returns, per named connection, the kinds of its events in order
// ("killed ok", "killed refused" for kills).
func history(evs []events.Event, keys map[string]string) map[string][]string {
	out := map[string][]string{}
	for _, name := range keys {
		out[name] = []string{""}
	}
	for _, e := range evs {
		name := keys[strings.ReplaceAll(e.Local, "::ffff:", "")+" "+strings.ReplaceAll(e.Remote, "::ffff:", "")]
		if name == "" {
			continue
		}
		k := string(e.Kind)
		if e.Result != "" {
			k += " " + e.Result
		}
		out[name] = append(out[name], k)
	}
	for name := range out {
		if len(out[name]) > 1 {
			out[name] = out[name][1:]
		}
	}
	return out
}

// isOrderedKinds reports whether got is want with only "killed refused"
// events added before the kill.
func isOrderedKinds(got, want []string) bool {
	var kept []string
	for _, k := range got {
		if k != "killed refused" {
			kept = append(kept, k)
		}
	}
	return strings.Join(kept, ",") == strings.Join(want, ",")
}

// lineStarting returns the first line of s that starts with prefix.
func lineStarting(s, prefix string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}
