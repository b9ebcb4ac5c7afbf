package exporter

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/events"
)

// historyStore is a store whose recorder holds seven events, one a second
// from t0+1s.
func historyStore(t *testing.T) *Store {
	t.Helper()
	at := t0
	rec, err := events.NewRecorder(events.Config{RingSize: 100, FileMaxBytes: events.MinFileMaxBytes, FilesKept: 1}, func() time.Time {
		at = at.Add(time.Second)
		return at
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []events.Event{
		{Kind: events.Suspect, Netns: "host", Comm: "postgres", Unit: "postgresql.service", Verdict: "unprobed"},                       // 1
		{Kind: events.Suspect, Netns: "blue", Comm: "curl", Verdict: "unprobed"},                                                       // 2
		{Kind: events.Ghost, Netns: "host", Comm: "postgres", Unit: "postgresql.service", Verdict: "silent"},                           // 3
		{Kind: events.Ghost, Netns: "blue", Comm: "curl", Verdict: "reset"},                                                            // 4
		{Kind: events.Alive, Netns: "blue", Comm: "curl", Verdict: "alive"},                                                            // 5
		{Kind: events.Killed, Netns: "host", Comm: "postgres", Unit: "postgresql.service", Verdict: "silent", Result: events.ResultOK}, // 6
		{Kind: events.Gone, Netns: "host", Comm: "<b>x</b>", Verdict: "silent"},                                                        // 7
	} {
		rec.Emit(e)
	}
	s := NewStore(testBld, func() time.Time { return t0.Add(time.Minute) })
	s.SetEvents(rec)
	return s
}

func TestEventsAPI(t *testing.T) {
	h := NewHandler(historyStore(t), HandlerOptions{})
	tests := []struct {
		query string
		seqs  []uint64
		next  uint64
		more  bool
	}{
		{"", []uint64{1, 2, 3, 4, 5, 6, 7}, 7, false},
		{"?limit=2", []uint64{6, 7}, 7, true},
		{"?since=2&limit=2", []uint64{3, 4}, 4, true},
		{"?since=0&limit=2", []uint64{1, 2}, 2, true},
		{"?since=4", []uint64{5, 6, 7}, 7, false},
		{"?since=7", []uint64{}, 7, false},
		{"?since=2026-11-26T12:00:06Z", []uint64{6, 7}, 7, false},
		{"?kind=ghost&kind=gone", []uint64{3, 4, 7}, 7, false},
		{"?netns=blue", []uint64{2, 4, 5}, 5, false},
		{"?owner=postgresql.service", []uint64{1, 3, 6}, 6, false},
		{"?owner=curl&kind=ghost", []uint64{4}, 4, false},
		{"?verdict=silent", []uint64{3, 6, 7}, 7, false},
		{"?verdict=alive&netns=host", []uint64{}, 7, false},
	}
	for _, tt := range tests {
		rec := get(t, h, "/api/v1/events"+tt.query)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%q: %d %s: %s", tt.query, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
			continue
		}
		var p events.Page
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatalf("%q: %v", tt.query, err)
		}
		got := []uint64{}
		for _, e := range p.Events {
			got = append(got, e.Seq)
		}
		if diff := cmp.Diff(tt.seqs, got); diff != "" {
			t.Errorf("%q: seqs (-want +got):\n%s", tt.query, diff)
		}
		if p.Next != tt.next || p.More != tt.more || p.Oldest != 1 || p.Latest != 7 {
			t.Errorf("%q: next %d more %v oldest %d latest %d", tt.query, p.Next, p.More, p.Oldest, p.Latest)
		}
	}
	for query, want := range map[string]string{
		"?since=yesterday": `since: want a sequence number or an RFC 3339 time, got \"yesterday\"`,
		"?kind=dead":       `unknown kind \"dead\"`,
		"?verdict=ghostly": `unknown verdict \"ghostly\"`,
		"?limit=0":         `limit: want 1 to 10000, got \"0\"`,
		"?limit=10001":     `limit: want 1 to 10000, got \"10001\"`,
		"?netns=" + strings.Repeat("&netns=x", MaxFilterValues): `too many filter values (65 \u003e 64)`,
	} {
		rec := get(t, h, "/api/v1/events"+query)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%q: %d %s, want 400 with %s", query, rec.Code, rec.Body, want)
		}
	}
	// A store without history says so.
	rec := get(t, NewHandler(NewStore(testBld, nil), HandlerOptions{}), "/api/v1/events")
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "no event history") {
		t.Errorf("no recorder: %d %s", rec.Code, rec.Body)
	}
}

func TestGroupsAPI(t *testing.T) {
	s := NewStore(testBld, nil)
	h := NewHandler(s, HandlerOptions{})
	if rec := get(t, h, "/api/v1/groups"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("before a scan: %d", rec.Code)
	}
	s.Publish(fixtureSnapshot())
	tests := []struct {
		query string
		want  GroupsDocument
	}{
		{"", GroupsDocument{ScannedAt: t0, By: ByOwner, Groups: []Group{
			{Owner: "<script>alert(1)</script>", Ghosts: 1, Suspects: 1},
			{Owner: "postgresql.service", Ghosts: 1, Suspects: 1},
			{Owner: "leaky", Suspects: 1},
			{Owner: "ssh.service", Suspects: 1},
		}}},
		{"?by=owner&netns=blue", GroupsDocument{ScannedAt: t0, By: ByOwner, Groups: []Group{{Owner: "leaky", Suspects: 1}}}},
		{"?by=destination&netns=host", GroupsDocument{ScannedAt: t0, By: ByDestination, Groups: []Group{
			{Destination: "198.51.100.0/24", Port: 5432, PortSide: PortLocal, Ghosts: 1, Suspects: 1},
			{Destination: "2001:db8::/64", Port: 443, PortSide: PortLocal, Ghosts: 1, Suspects: 1},
			{Destination: "203.0.113.0/24", Port: 22, PortSide: PortLocal, Suspects: 1},
		}}},
	}
	for _, tt := range tests {
		rec := get(t, h, "/api/v1/groups"+tt.query)
		var got GroupsDocument
		if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != http.StatusOK || err != nil {
			t.Errorf("%q: %d %v: %s", tt.query, rec.Code, err, rec.Body)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tt.query, diff)
		}
	}
	if rec := get(t, h, "/api/v1/groups?by=pid"); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "by: want owner or destination") {
		t.Errorf("by=pid: %d %s", rec.Code, rec.Body)
	}
}

func TestPageGroupsAndEvents(t *testing.T) {
	s := historyStore(t)
	s.Publish(fixtureSnapshot())
	body := get(t, NewHandler(s, HandlerOptions{}), "/").Body.String()
	if strings.Contains(body, "<b>x") {
		t.Errorf("page contains an unescaped owner:\n%s", body)
	}
	for _, want := range []string{
		"<h2>Ghosts per service</h2>",
		`<tr class="ghost"><td class="mono">postgresql.service</td><td class="n">1</td><td class="n">1</td><td class="n">0</td></tr>`,
		`<tr><td class="mono">ssh.service</td><td class="n">0</td><td class="n">1</td><td class="n">0</td></tr>`,
		`<td class="mono">198.51.100.0/24 → local port 5432</td><td class="n">1</td>`,
		"<h2>Recent events</h2>",
		`<td class="mono">&lt;b&gt;x&lt;/b&gt;</td>`, // the gone event's owner, escaped
		"<td>killed</td>", "<td>ok</td>",
		`href="api/v1/events"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Newest first.
	if i, j := strings.Index(body, "<td>gone</td>"), strings.Index(body, "<td>suspect</td>"); i < 0 || j < 0 || i > j {
		t.Errorf("events not newest first (gone at %d, suspect at %d)", i, j)
	}
	// Without a history the page has no event table.
	plain := NewStore(testBld, nil)
	plain.Publish(fixtureSnapshot())
	if body := get(t, NewHandler(plain, HandlerOptions{}), "/").Body.String(); strings.Contains(body, "Recent events") {
		t.Error("a store without events shows an event table")
	}
}
