package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
)

// fileQueue is how many events wait for the file writer before new ones
// are dropped (and counted): about a scan's worth of transitions on a busy
// host, a few MB at most.
const fileQueue = 4096

// fileSink appends events to a JSONL file from its own goroutine, rotating
// it at a size cap. Enqueue never blocks: when the queue is full, or a
// write fails, the event is dropped and counted.
type fileSink struct {
	path     string
	maxBytes int64
	keep     int
	log      *slog.Logger

	q       chan Event
	done    chan struct{}
	dropped atomic.Uint64

	f    *os.File
	size int64

	errMu  sync.Mutex
	errSet map[string]bool // write errors already logged
}

// newFileSink opens (appending to) the file at c.File. The writer starts
// with start.
func newFileSink(c Config, queue int, log *slog.Logger) (*fileSink, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &fileSink{
		path: c.File, maxBytes: c.FileMaxBytes, keep: c.FilesKept, log: log,
		q: make(chan Event, queue), done: make(chan struct{}), errSet: map[string]bool{},
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("events: %w", err)
	}
	s.f, s.size = f, st.Size()
	return nil
}

func (s *fileSink) start() { go s.run() }

// enqueue hands ev to the writer, or drops it when the queue is full.
func (s *fileSink) enqueue(ev Event) {
	select {
	case s.q <- ev:
	default:
		s.dropped.Add(1)
	}
}

func (s *fileSink) run() {
	defer close(s.done)
	for ev := range s.q {
		if err := s.write(&ev); err != nil {
			s.dropped.Add(1)
			s.logOnce(err)
		}
	}
	if s.f != nil {
		if err := s.f.Close(); err != nil {
			s.logOnce(err)
		}
	}
}

// close stops the writer once the queue is drained; no enqueue may follow.
func (s *fileSink) close() {
	close(s.q)
	<-s.done
}

func (s *fileSink) logOnce(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	msg := err.Error()
	if s.errSet[msg] || len(s.errSet) >= 16 {
		return
	}
	s.errSet[msg] = true
	s.log.Warn("events file: event dropped", "file", s.path, "err", msg)
}

// write appends one line, rotating first if the line would take the file
// past its cap (a line longer than the cap gets a file of its own).
func (s *fileSink) write(ev *Event) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("events: encode: %w", err)
	}
	line = append(line, '\n')
	if s.f == nil || (s.size > 0 && s.size+int64(len(line)) > s.maxBytes) {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	n, err := s.f.Write(line)
	s.size += int64(n)
	if err != nil {
		return fmt.Errorf("events: write %s: %w", s.path, err)
	}
	return nil
}

// rotate closes the file and shifts it to path.1, path.1 to path.2 and so
// on, dropping the oldest so that keep files remain, then opens a new one.
func (s *fileSink) rotate() error {
	if s.f != nil {
		err := s.f.Close()
		s.f = nil
		if err != nil {
			return fmt.Errorf("events: close %s: %w", s.path, err)
		}
	}
	name := func(i int) string {
		if i == 0 {
			return s.path
		}
		return s.path + "." + strconv.Itoa(i)
	}
	if err := os.Remove(name(s.keep - 1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("events: rotate: %w", err)
	}
	for i := s.keep - 2; i >= 0; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("events: rotate: %w", err)
		}
	}
	return s.open()
}
