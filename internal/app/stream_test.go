package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/ghostd/ghostd/exporter"
)

// streamDoc is a document whose sessions exercise what encoders and column
// widths care about: nulls, HTML characters, multi-byte and escaped names,
// and a batch boundary.
func streamDoc(n int) *exporter.Document {
	doc := &exporter.Document{
		ScannedAt:  time.Date(2026, 12, 2, 9, 0, 0, 123, time.UTC),
		Namespaces: []exporter.NamespaceStatus{{Netns: "host", NetnsInode: 4026531840, Sockets: n}, {Netns: "pid-<x>&-7", Error: "inventory: gone"}},
		Sessions:   []exporter.Session{},
	}
	for i := range n {
		rtt, dl := 0.0004*float64(i), 1e-7*float64(i)
		reach := i%2 == 0
		s := exporter.Session{
			Netns: []string{"host", "naïve-ünïcode", "evil\x1b[2J", "pid-<x>&-7"}[i%4], NetnsInode: uint64(i), Family: "inet6",
			State: "ESTABLISHED", Local: "[2001:db8::1]:443", Remote: fmt.Sprintf("[2001:db8::2]:%d", 1000+i*37),
			Cookie: uint64(i) << 40, Inode: uint32(i), PID: i * 13, Comm: []string{"", "post<gres>", "日本語", "x\x07"}[i%4],
			IdleSeconds: float64(i) * 61.25, Reasons: [][]string{nil, {"idle"}, {"close_wait", "retransmitting"}}[i%3],
			Verdict: []string{"unprobed", "alive", "silent", "reset"}[i%4], ProbesSent: i % 4, Replies: i % 2, Ghost: i%4 >= 2, Killed: i%7 == 0,
			Unit: []string{"", "a.service"}[i%2], Container: []string{"", "", "", "c0ffee"}[i%4],
		}
		if i%3 == 0 {
			s.RTTSeconds, s.HostReachable, s.KernelDeadlineSeconds, s.KernelDeadlineBasis = &rtt, &reach, &dl, "keepalive"
		}
		doc.Sessions = append(doc.Sessions, s)
	}
	return doc
}

// inBatches lists sessions as the engine does, a few at a time.
func inBatches(ss []exporter.Session, size int) eachSessions {
	return func(fn func([]exporter.Session) bool) {
		for ss := ss; len(ss) > 0; {
			n := min(size, len(ss))
			if !fn(ss[:n]) {
				return
			}
			ss = ss[n:]
		}
	}
}

// TestWriteJSONStreams: the streamed document is byte for byte what a
// json.Encoder indented by two spaces writes for the whole Document (the
// JSON contract `ghostd scan --json` always printed), with and without
// sessions.
func TestWriteJSONStreams(t *testing.T) {
	for _, n := range []int{0, 1, 7, 40} {
		doc := streamDoc(n)
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := writeJSON(&got, doc, inBatches(doc.Sessions, 3)); err != nil {
			t.Fatalf("%d sessions: %v", n, err)
		}
		if got.String() != want.String() {
			t.Errorf("%d sessions: streamed JSON differs:\n%s\nwant:\n%s", n, got.String(), want.String())
		}
	}
}

// tableRow returns a session's cells.
func tableRow(s *exporter.Session) [len(tableColumns)]string {
	var r rowCells
	r.fill(s)
	var cells [len(tableColumns)]string
	for i := range cells {
		cells[i] = string(r.cell(i))
	}
	return cells
}

// TestWriteTableMatchesTabwriter: the two-pass table pads every column
// exactly as text/tabwriter (minwidth 0, padding 2, spaces) pads the whole
// table held in memory, which is what `ghostd scan` printed before.
func TestWriteTableMatchesTabwriter(t *testing.T) {
	for _, n := range []int{0, 1, 40} {
		doc := streamDoc(n)
		var want bytes.Buffer
		tw := tabwriter.NewWriter(&want, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(tableColumns[:], "\t"))
		ghosts := 0
		for i := range doc.Sessions {
			row := tableRow(&doc.Sessions[i])
			fmt.Fprintln(tw, strings.Join(row[:], "\t"))
			if doc.Sessions[i].Ghost {
				ghosts++
			}
		}
		tw.Flush()
		fmt.Fprintf(&want, "netns pid-<x>&-7: not scanned: inventory: gone\n%d sessions listed, %d ghosts, %d sockets in 2 namespaces, probes blind\n", n, ghosts, n)
		var got bytes.Buffer
		if err := writeTableStream(&got, doc.Namespaces, inBatches(doc.Sessions, 3), "blind"); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("%d sessions: table differs:\n%s\nwant:\n%s", n, got.String(), want.String())
		}
	}
}

// TestWriteTableLookAhead: rows are padded a block of tableLookAhead at a
// time (the header is the first block's first row), each block to the
// widest cells so far: a wider cell in the second block widens its column
// from there on, and only there.
func TestWriteTableLookAhead(t *testing.T) {
	n := tableLookAhead + 10
	ss, doc := benchSessions(n)
	for i := range ss {
		ss[i].Netns = "a"
	}
	wide := "a-much-longer-name"
	ss[n-1].Netns = wide
	var out bytes.Buffer
	if err := writeTableStream(&out, doc.Namespaces, inBatches(ss, 512), "in_window"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) != n+3 { // the header, the rows, the summary, ""
		t.Fatalf("%d lines, want %d", len(lines), n+3)
	}
	for i, line := range lines[1 : n+1] {
		// NETNS is padded to its width plus two: "NETNS" in the first
		// block, the wide name after it.
		want := len("NETNS") + 2
		if i+1 >= tableLookAhead {
			want = len(wide) + 2
		}
		if got := strings.Index(line, "ESTABLISHED"); got != want {
			t.Fatalf("row %d: STATE at column %d, want %d: %q", i+1, got, want, line)
		}
	}
}

// benchSessions returns n healthy sockets' sessions as `ghostd scan --all`
// lists them, and their document's namespaces.
func benchSessions(n int) ([]exporter.Session, *exporter.Document) {
	ss := make([]exporter.Session, n)
	for i := range ss {
		ss[i] = exporter.Session{
			Netns: "gd-scan-1a2b3c", Family: "inet", State: "ESTABLISHED",
			Local: "127.0.0.1:" + strconv.Itoa(1024+i%60000), Remote: "127.0.0.1:" + strconv.Itoa(1024+(i*7)%60000),
			PID: 10904 + i%10, Comm: "connfarm", IdleSeconds: float64(i % 3600), Reasons: []string{}, Verdict: "unprobed",
			KernelDeadlineBasis: "none",
		}
	}
	return ss, &exporter.Document{Namespaces: []exporter.NamespaceStatus{{Netns: "gd-scan-1a2b3c", Sockets: n}}}
}

// BenchmarkWriteTable prints the table of 200 000 healthy sockets, as
// `ghostd scan --all` does: one pass over the sessions, a batch of 512 at a
// time.
func BenchmarkWriteTable(b *testing.B) {
	const n = 200_000
	ss, doc := benchSessions(n)
	b.ReportAllocs()
	for b.Loop() {
		if err := writeTableStream(io.Discard, doc.Namespaces, inBatches(ss, 512), "in_window"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/session")
}

// BenchmarkWriteJSON writes the JSON document of 200 000 healthy sockets
// through a 64 KiB buffer, as `ghostd scan --all --json` does.
func BenchmarkWriteJSON(b *testing.B) {
	const n = 200_000
	ss, doc := benchSessions(n)
	out := bufio.NewWriterSize(io.Discard, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		if err := writeJSON(out, doc, inBatches(ss, 512)); err != nil {
			b.Fatal(err)
		}
		if err := out.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/session")
}
