package exporter

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

// batchedSource serves a list two sessions at a time, as the engine serves
// its sessions in batches, and counts the batches it built.
type batchedSource struct {
	list    []Session
	batches int
}

func (b *batchedSource) EachSession(fn func([]Session) bool) {
	for c := range slices.Chunk(b.list, 2) {
		b.batches++
		if !fn(slices.Clone(c)) {
			return
		}
	}
}

func (b *batchedSource) TopSessions(n int) []Session { return staticSessions(b.list).TopSessions(n) }

// sourcedSnapshot is the fixture as the daemon publishes it: counts in
// Summary, sessions from a Source, Doc.Sessions nil.
func sourcedSnapshot() (*Snapshot, *batchedSource) {
	snap := fixtureSnapshot()
	src := &batchedSource{list: snap.Doc.Sessions}
	snap.Summary = Summarize(snap.Doc.Sessions)
	snap.Source = src
	snap.Doc.Sessions = nil
	return snap, src
}

// TestSessionsStreamedAsEncoded: the streamed document is byte for byte what
// json.Encoder writes for the whole Document, from a list or from a source.
func TestSessionsStreamedAsEncoded(t *testing.T) {
	var want bytes.Buffer
	if err := json.NewEncoder(&want).Encode(fixtureSnapshot().Doc); err != nil {
		t.Fatal(err)
	}
	listed := NewStore(testBld, nil)
	listed.Publish(fixtureSnapshot())
	sourced := NewStore(testBld, nil)
	snap, src := sourcedSnapshot()
	sourced.Publish(snap)
	for name, s := range map[string]*Store{"listed": listed, "sourced": sourced} {
		rec := get(t, NewHandler(s, HandlerOptions{}), "/api/v1/sessions")
		if diff := cmp.Diff(want.String(), rec.Body.String()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	if src.batches != 2 {
		t.Errorf("source built %d batches of 4 sessions by 2, want 2", src.batches)
	}
	// A filter applies to the streamed sessions too.
	rec := get(t, NewHandler(sourced, HandlerOptions{}), "/api/v1/sessions?verdict=reset")
	var doc Document
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Sessions) != 1 || doc.Sessions[0].Cookie != 12 {
		t.Errorf("verdict=reset from a source: %+v, want cookie 12 only", doc.Sessions)
	}
}

// TestSourcedSnapshotViews: metrics and the page read the same numbers from
// a snapshot's Summary and Source as from its listed sessions.
func TestSourcedSnapshotViews(t *testing.T) {
	listed := NewStore(testBld, nil)
	listed.Publish(fixtureSnapshot())
	sourced := NewStore(testBld, nil)
	snap, _ := sourcedSnapshot()
	sourced.Publish(snap)
	names := []string{"ghostd_ghost_sessions", "ghostd_suspect_sessions", "ghostd_oldest_ghost_age_seconds"}
	want, err := testutil.CollectAndFormat(listed.Collector(), expfmt.TypeTextPlain, names...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := testutil.CollectAndFormat(sourced.Collector(), expfmt.TypeTextPlain, names...)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("metrics listed vs sourced (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(want), `ghostd_ghost_sessions{family="inet6",netns="host",verdict="reset"} 1`) {
		t.Errorf("fixture metrics lack the reset ghost:\n%s", string(want))
	}
	pw := buildPage(listed.Snapshot(), testBld, t0)
	pg := buildPage(sourced.Snapshot(), testBld, t0)
	if diff := cmp.Diff(pw, pg); diff != "" {
		t.Errorf("page listed vs sourced (-want +got):\n%s", diff)
	}
	if pg.Ghosts != 2 || pg.Suspects != 4 || len(pg.Rows) != 4 || !pg.Rows[0].Ghost || pg.Rows[0].Remote != "198.51.100.7:40000" {
		t.Errorf("page: %d ghosts, %d suspects, rows %+v; want 2, 4, the 120 s ghost first", pg.Ghosts, pg.Suspects, pg.Rows)
	}
}

func TestTopOrder(t *testing.T) {
	list := []Session{
		{Cookie: 1, IdleSeconds: 10},
		{Cookie: 2, Ghost: true, GhostSeconds: 5, IdleSeconds: 1},
		{Cookie: 3, IdleSeconds: 300},
		{Cookie: 4, Ghost: true, GhostSeconds: 50},
	}
	var got []uint64
	for _, s := range staticSessions(list).TopSessions(3) {
		got = append(got, s.Cookie)
	}
	if diff := cmp.Diff([]uint64{4, 2, 3}, got); diff != "" {
		t.Errorf("top 3 cookies (-want +got):\n%s", diff)
	}
}

// TestRepublishSameScan: a snapshot republished with newer verdicts is the
// same scan, not a second one in ghostd_scan_duration_seconds.
func TestRepublishSameScan(t *testing.T) {
	s := NewStore(testBld, nil)
	s.Publish(fixtureSnapshot())
	s.Publish(fixtureSnapshot())
	next := fixtureSnapshot()
	next.Doc.ScannedAt = t0.Add(15 * time.Second)
	s.Publish(next)
	out, err := testutil.CollectAndFormat(s.Collector(), expfmt.TypeTextPlain, "ghostd_scan_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "ghostd_scan_duration_seconds_count 2\n") {
		t.Errorf("three publishes of two scans:\n%s", out)
	}
}
