package testnet

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
)

// fakeTB records what LoadBPF asks of a test; Fatalf and Skip end the
// goroutine as the testing package's do.
type fakeTB struct {
	testing.TB
	cleanups []func()
	fatal    string
	errs     []string
	skipped  bool
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Skip(...any) { f.skipped = true; runtime.Goexit() }

// load runs LoadBPF on f in a goroutine of its own, then f's cleanups.
func (f *fakeTB) load(load func() (*loaded, error)) *loaded {
	var got *loaded
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = LoadBPF[*loaded](f, load)
	}()
	<-done
	for _, fn := range f.cleanups {
		fn()
	}
	return got
}

type loaded struct {
	closed int
	err    error
}

func (l *loaded) Close() error { l.closed++; return l.err }

// TestLoadBPF: what loads is returned and closed when the test ends; a
// failed load fails the test with nothing to close; a failed close fails
// it; without root nothing is loaded and the test is skipped.
func TestLoadBPF(t *testing.T) {
	if os.Geteuid() != 0 {
		f := &fakeTB{}
		f.load(func() (*loaded, error) { t.Error("loaded without root"); return nil, nil })
		if !f.skipped {
			t.Error("not skipped without root")
		}
		return
	}
	l := &loaded{}
	f := &fakeTB{}
	if got := f.load(func() (*loaded, error) { return l, nil }); got != l || l.closed != 1 || f.fatal != "" || f.errs != nil {
		t.Errorf("load: got %p (want %p), closed %d times, fatal %q, errors %q", got, l, l.closed, f.fatal, f.errs)
	}
	f = &fakeTB{}
	f.load(func() (*loaded, error) { return nil, errors.New("no BTF") })
	if f.fatal != "load BPF: no BTF" || len(f.cleanups) != 0 {
		t.Errorf("failed load: fatal %q, %d cleanups", f.fatal, len(f.cleanups))
	}
	f = &fakeTB{}
	f.load(func() (*loaded, error) { return &loaded{err: errors.New("busy")}, nil })
	if len(f.errs) != 1 || f.errs[0] != "Close: busy" {
		t.Errorf("failed close: errors %q", f.errs)
	}
}
