package app

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ghostd/ghostd/exporter"
)

// tableColumns is the table's header; every column but the last is padded
// to its widest cell plus two spaces, as text/tabwriter would.
var tableColumns = [...]string{"NETNS", "STATE", "LOCAL", "REMOTE", "IDLE", "KERNEL", "REASONS", "VERDICT", "PROBES", "PROCESS"}

// rowCells is a row's cells, written one after the other at the end of b,
// after the rows before it (the rows a table holds until it writes them):
// `ghostd scan --all` lays out 200 000 rows, and a string per cell was most
// of it.
type rowCells struct {
	b     []byte
	start int                    // the row's first cell starts at b[start]
	ends  [len(tableColumns)]int // cell i ends at b[ends[i]]
	idle  idleCache
}

// cell returns the i-th cell.
func (r *rowCells) cell(i int) []byte {
	start := r.start
	if i > 0 {
		start = r.ends[i-1]
	}
	return r.b[start:r.ends[i]]
}

// header makes r's next row the header.
func (r *rowCells) header() {
	r.start = len(r.b)
	for i, c := range tableColumns {
		r.b = append(r.b, c...)
		r.ends[i] = len(r.b)
	}
}

// fill makes r's next row the row of s. Names and comms come from other
// users: never let them reach the terminal raw (escape sequences), nor
// break the columns.
func (r *rowCells) fill(s *exporter.Session) {
	r.start = len(r.b)
	b := appendTermSafe(r.b, s.Netns)
	r.ends[0] = len(b)
	b = append(b, s.State...)
	r.ends[1] = len(b)
	b = append(b, s.Local...)
	r.ends[2] = len(b)
	b = append(b, s.Remote...)
	r.ends[3] = len(b)
	b = append(b, r.idle.format(s.IdleSeconds)...)
	r.ends[4] = len(b)
	b = append(b, kernelColumn(s)...)
	r.ends[5] = len(b)
	for i, reason := range s.Reasons {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, reason...)
	}
	if len(b) == r.ends[5] {
		b = append(b, '-')
	}
	r.ends[6] = len(b)
	b = append(b, s.VerdictText()...)
	if s.Ghost {
		b = append(b, " (ghost)"...)
	}
	if s.Killed {
		b = append(b, " killed"...)
	}
	r.ends[7] = len(b)
	b = strconv.AppendInt(b, int64(s.Replies), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(s.ProbesSent), 10)
	r.ends[8] = len(b)
	b = appendProcess(b, s)
	r.ends[9] = len(b)
	r.b = b
}

// appendTermSafe appends termSafe(s), which is s itself when it is clean.
func appendTermSafe(b []byte, s string) []byte { return append(b, termSafe(s)...) }

// appendProcess appends the process cell: "comm[pid] unit" (or
// "container:NAME"), "-" for nobody; names made terminal-safe one by one
// (the same as the whole cell: the brackets and the space between them are
// ASCII, which no escape spans).
func appendProcess(b []byte, s *exporter.Session) []byte {
	start := len(b)
	if s.Comm != "" {
		b = append(appendTermSafe(b, s.Comm), '[')
		b = append(strconv.AppendInt(b, int64(s.PID), 10), ']')
	}
	where, kind := s.Unit, ""
	switch {
	case where != "":
	case s.ContainerName != "":
		where, kind = s.ContainerName, "container:"
	case s.Container != "":
		where, kind = s.Container, "container:"
	}
	if where != "" {
		if len(b) > start {
			b = append(b, ' ')
		}
		b = appendTermSafe(append(b, kind...), where)
	}
	if len(b) == start {
		b = append(b, '-')
	}
	return b
}

// FormatIdle renders seconds compactly: "850ms", "42s", "7m12s", "2h11m".
func FormatIdle(sec float64) string { return idleKeyOf(sec).format() }

// idleKey is what FormatIdle's output depends on: which of its cases
// applies and the duration rounded as that case rounds it.
type idleKey struct {
	rounded time.Duration
	unit    time.Duration // 0: none ("-")
}

func idleKeyOf(sec float64) idleKey {
	switch d := time.Duration(sec * float64(time.Second)); {
	case d <= 0:
		return idleKey{}
	case d < time.Second:
		return idleKey{d.Round(time.Millisecond), time.Millisecond}
	case d < time.Hour:
		return idleKey{d.Round(time.Second), time.Second}
	default:
		return idleKey{d.Round(time.Minute), time.Minute}
	}
}

func (k idleKey) format() string {
	switch k.unit {
	case 0:
		return "-"
	case time.Minute:
		return strings.TrimSuffix(k.rounded.String(), "0s")
	}
	return k.rounded.String()
}

// idleCache remembers the idle cells already formatted: at one-second
// resolution (a minute's past an hour) 200 000 sockets share a few
// thousand values, and formatting a time.Duration allocates. A cell under
// an hour is found by its rounded value, in an array.
type idleCache struct {
	ms    [1001]string // under a second: by milliseconds, rounded (0 to 1000)
	secs  [3601]string // under an hour: by seconds, rounded (1 to 3600)
	hours map[idleKey]string
}

// format is FormatIdle, remembered.
func (c *idleCache) format(sec float64) string {
	k := idleKeyOf(sec)
	var slot *string
	switch k.unit {
	case 0:
		return k.format()
	case time.Millisecond:
		slot = &c.ms[k.rounded/time.Millisecond]
	case time.Second:
		slot = &c.secs[k.rounded/time.Second]
	default:
		v, ok := c.hours[k]
		if !ok {
			if c.hours == nil || len(c.hours) >= 1<<14 {
				c.hours = make(map[idleKey]string)
			}
			v = k.format()
			c.hours[k] = v
		}
		return v
	}
	if *slot == "" {
		*slot = k.format()
	}
	return *slot
}

// writeTable prints a document's sessions like ss does, then one line per
// namespace that could not be scanned.
func writeTable(w io.Writer, doc *exporter.Document, mode string) error {
	return writeTableStream(w, doc.Namespaces, func(fn func([]exporter.Session) bool) { fn(doc.Sessions) }, mode)
}

// tableLookAhead is how many rows the table holds before it writes them:
// their column widths are those of every row held and written before, so
// a listing of up to this many rows is laid out as one, and in a longer
// one a column can only widen from one block of rows to the next. The
// rows held (~4 MB) are what building each session once costs: the table
// built every session twice, once for the widths, once for the rows.
const tableLookAhead = 32768

// rowBlock holds rows laid out but not written yet: their cells are in
// text (rowCells.b), one row after the other.
type rowBlock struct {
	rows []heldRow
}

// heldRow is where a held row's cells end in text, and how wide each
// padded one is in runes.
type heldRow struct {
	ends  [len(tableColumns)]uint32 // cell i ends at text[ends[i]]
	runes [len(tableColumns) - 1]uint32
}

// add holds row's last row and widens widths to its cells.
func (b *rowBlock) add(row *rowCells, widths *[len(tableColumns) - 1]int) {
	var h heldRow
	for i, e := range row.ends {
		h.ends[i] = uint32(e)
	}
	for i := range h.runes {
		n := utf8.RuneCount(row.cell(i))
		h.runes[i] = uint32(n)
		widths[i] = max(widths[i], n)
	}
	b.rows = append(b.rows, h)
}

// appendRow appends held row r of text padded to widths, and a newline.
func (b *rowBlock) appendRow(line, text []byte, r int, widths *[len(tableColumns) - 1]int) []byte {
	start := uint32(0)
	if r > 0 {
		start = b.rows[r-1].ends[len(tableColumns)-1]
	}
	h := &b.rows[r]
	for i, end := range h.ends {
		line = append(line, text[start:end]...)
		start = end
		if i < len(h.runes) {
			for pad := widths[i] + 2 - int(h.runes[i]); pad > 0; pad -= len(spaces) {
				line = append(line, spaces[:min(pad, len(spaces))]...)
			}
		}
	}
	return append(line, '\n')
}

// spaces pads cells, a run of them at a time.
const spaces = "                                "

// writeTableStream is writeTable for sessions listed by each, in one pass:
// the rows are held tableLookAhead at a time, then written padded to the
// widest cells so far.
func writeTableStream(w io.Writer, namespaces []exporter.NamespaceStatus, each eachSessions, mode string) error {
	var widths [len(tableColumns) - 1]int
	var row rowCells
	var block rowBlock
	var line []byte
	var err error
	flush := func() {
		for r := range block.rows {
			line = block.appendRow(line[:0], row.b, r, &widths)
			if _, err = w.Write(line); err != nil {
				return
			}
		}
		row.b, block.rows = row.b[:0], block.rows[:0]
	}
	listed, ghosts := 0, 0
	add := func() {
		block.add(&row, &widths)
		if len(block.rows) >= tableLookAhead {
			flush()
		}
	}
	row.header()
	add()
	each(func(batch []exporter.Session) bool {
		for i := range batch {
			row.fill(&batch[i])
			if add(); err != nil {
				return false
			}
			listed++
			if batch[i].Ghost {
				ghosts++
			}
		}
		return true
	})
	if err == nil {
		flush()
	}
	if err != nil {
		return err
	}
	sockets := 0
	for _, ns := range namespaces {
		sockets += ns.Sockets
		if ns.Error != "" {
			if _, err := fmt.Fprintf(w, "netns %s: not scanned: %s\n", termSafe(ns.Netns), termSafe(ns.Error)); err != nil {
				return err
			}
		}
	}
	_, err = fmt.Fprintf(w, "%d sessions listed, %d ghosts, %d sockets in %d namespaces, probes %s\n",
		listed, ghosts, sockets, len(namespaces), mode)
	return err
}

// kernelColumn is when the socket's own kernel would notice a dead peer:
// ">1h58m" no earlier than (keepalive), "~15m24s" about (retransmissions),
// "never", or "?" when it cannot be told.
func kernelColumn(s *exporter.Session) string {
	return strings.ReplaceAll(exporter.KernelDeadline(s, func(sec float64) string {
		if sec < 1 {
			return "0s"
		}
		return FormatIdle(sec)
	}), "≥", ">")
}
