package events

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// line is the JSONL line the file holds for ev.
func line(t *testing.T, ev Event) int64 {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(b) + 1)
}

// fileSeqs returns the sequence numbers in a JSONL file, and its size.
func fileSeqs(t *testing.T, path string) ([]uint64, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, e.Seq)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return out, st.Size()
}

func TestFileRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	// Every event has the same length (seq 1 to 9 are one digit, and the
	// clock stays on whole seconds), so two lines fit under the cap and
	// three do not.
	c := &clock{t: t0}
	mk := func(seq uint64) Event {
		e := ev(Ghost, "host", "app", "app.service", "silent")
		e.Seq, e.Time = seq, t0.Add(time.Duration(seq)*time.Second)
		return e
	}
	l := line(t, mk(1))
	cfg := Config{RingSize: 16, File: path, FileMaxBytes: 2*l + l/2, FilesKept: 3}
	r, err := NewRecorder(cfg, c.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 7 {
		r.Emit(ev(Ghost, "host", "app", "app.service", "silent"))
	}
	r.Close()
	r.Emit(ev(Gone, "host", "app", "", "silent")) // after Close: the ring only

	// 7 events, 2 per file, 3 files kept: 1 and 2 rotated away.
	want := map[string][]uint64{path: {7}, path + ".1": {5, 6}, path + ".2": {3, 4}}
	for p, seqs := range want {
		got, size := fileSeqs(t, p)
		if diff := cmp.Diff(seqs, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", p, diff)
		}
		if wantSize := int64(len(seqs)) * l; size != wantSize {
			t.Errorf("%s: %d bytes, want %d", p, size, wantSize)
		}
		if size > cfg.FileMaxBytes {
			t.Errorf("%s: %d bytes, over the cap of %d", p, size, cfg.FileMaxBytes)
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("a fourth file exists with files_kept 3: %v", err)
	}
	// The lines are the events as the ring holds them.
	p := r.Query(Query{SinceSeq: 6, Limit: 1})
	b, _ := json.Marshal(p.Events[0])
	raw, _ := os.ReadFile(path)
	if string(raw) != string(b)+"\n" {
		t.Errorf("file line %q, ring event %q", raw, b)
	}
	st := r.Stats()
	if st.FileDropped != 0 || !st.File || st.Recorded[Ghost.index()] != 7 || st.Recorded[Gone.index()] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestFileAppendsAndKeepsOne: a restart appends to the file it finds,
// counting its size toward the cap; with files_kept 1 a full file is
// started over.
func TestFileAppendsAndKeepsOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	old := `{"seq":1}` + "\n"
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	e := ev(Suspect, "host", "a", "", "unprobed")
	e.Seq, e.Time = 1, t0.Add(time.Second)
	l := line(t, e)
	r, err := NewRecorder(Config{RingSize: 4, File: path, FileMaxBytes: int64(len(old)) + l, FilesKept: 1}, (&clock{t: t0}).now, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Emit(ev(Suspect, "host", "a", "", "unprobed")) // fits after the old line
	r.Emit(ev(Suspect, "host", "a", "", "unprobed")) // does not: the file starts over
	r.Close()
	got, size := fileSeqs(t, path)
	if !cmp.Equal([]uint64{2}, got) || size != l {
		t.Errorf("file holds %v (%d bytes), want [2] (%d bytes)", got, size, l)
	}
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Errorf("files_kept 1 left %s.1: %v", path, err)
	}
}

// TestFileQueueFullDrops: the pipeline never waits for the disk; what the
// queue cannot hold is dropped and counted.
func TestFileQueueFullDrops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s, err := newFileSink(Config{File: path, FileMaxBytes: 1 << 20, FilesKept: 2}, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &Recorder{ring: NewRing(8, nil), file: s} // the writer is not started yet
	done := make(chan struct{})
	go func() {
		for range 5 {
			r.Emit(ev(Suspect, "host", "a", "", "unprobed"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Emit blocked on a full file queue")
	}
	if got := r.Stats().FileDropped; got != 3 {
		t.Errorf("dropped %d, want 3", got)
	}
	s.start()
	r.Close()
	got, _ := fileSeqs(t, path)
	if !cmp.Equal([]uint64{1, 2}, got) {
		t.Errorf("file holds %v, want [1 2]", got)
	}
}

// TestFileWriteErrorDrops: a file that cannot be written counts its events
// as dropped instead of stopping anything.
func TestFileWriteErrorDrops(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	s, err := newFileSink(Config{File: path, FileMaxBytes: 4096, FilesKept: 2}, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.f.Close() // every write now fails
	r := &Recorder{ring: NewRing(8, nil), file: s}
	s.start()
	for range 3 {
		r.Emit(ev(Suspect, "host", "a", "", "unprobed"))
	}
	r.Close()
	if got := r.Stats().FileDropped; got != 3 {
		t.Errorf("dropped %d, want 3", got)
	}
	if got := r.Query(Query{}); len(got.Events) != 3 {
		t.Errorf("the ring holds %d events, want 3", len(got.Events))
	}
}

func TestNewRecorderBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "events.jsonl")
	_, err := NewRecorder(Config{RingSize: 4, File: path, FileMaxBytes: 4096, FilesKept: 2}, nil, nil)
	if err == nil || err.Error() != "events: open "+path+": no such file or directory" {
		t.Errorf("err = %v", err)
	}
}

// TestRecorderConcurrent: emitters, readers and the file writer at once
// (run with -race); every event is in the file or counted as dropped.
func TestRecorderConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	r, err := NewRecorder(Config{RingSize: 64, File: path, FileMaxBytes: 1 << 20, FilesKept: 2}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const emitters, each = 4, 500
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			p := r.Query(Query{Kinds: []Kind{Ghost}, Limit: 10})
			for j := 1; j < len(p.Events); j++ {
				if p.Events[j].Seq <= p.Events[j-1].Seq {
					t.Errorf("page out of order: %d after %d", p.Events[j].Seq, p.Events[j-1].Seq)
				}
			}
			_ = r.Stats()
		}
	}()
	var wg sync.WaitGroup
	for range emitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				r.Emit(ev(Ghost, "host", "a", "", "silent"))
			}
		}()
	}
	wg.Wait()
	<-done
	r.Close()
	seqs, _ := fileSeqs(t, path)
	st := r.Stats()
	if got := uint64(len(seqs)) + st.FileDropped; got != emitters*each {
		t.Errorf("file %d + dropped %d = %d, want %d", len(seqs), st.FileDropped, got, emitters*each)
	}
	if st.Recorded[Ghost.index()] != emitters*each || st.Evicted != emitters*each-64 {
		t.Errorf("stats %+v", st)
	}
}
