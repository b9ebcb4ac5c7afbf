package bpftest

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
)

// fakeTB records what Load asks of a test; Fatalf and Skip end the
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

// load runs Load on f in a goroutine of its own and then f's cleanups.
func (f *fakeTB) load(load func() (*res, error)) *res {
	var got *res
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = Load[*res](f, "thing", load)
	}()
	<-done
	for _, fn := range f.cleanups {
		fn()
	}
	return got
}

type res struct {
	closed int
	err    error
}

func (r *res) Close() error { r.closed++; return r.err }

func TestLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		f := &fakeTB{}
		f.load(func() (*res, error) { t.Fatal("loaded without root"); return nil, nil })
		if !f.skipped {
			t.Error("not skipped without root")
		}
		return
	}
	r := &res{}
	f := &fakeTB{}
	if got := f.load(func() (*res, error) { return r, nil }); got != r || r.closed != 1 || f.fatal != "" || f.errs != nil {
		t.Errorf("load: got %p (want %p), closed %d times, fatal %q, errors %q", got, r, r.closed, f.fatal, f.errs)
	}
	f = &fakeTB{}
	f.load(func() (*res, error) { return nil, errors.New("no BTF") })
	if f.fatal != "thing: no BTF" || len(f.cleanups) != 0 {
		t.Errorf("failed load: fatal %q, %d cleanups", f.fatal, len(f.cleanups))
	}
	f = &fakeTB{}
	f.load(func() (*res, error) { return &res{err: errors.New("busy")}, nil })
	if len(f.errs) != 1 || f.errs[0] != "thing: Close: busy" {
		t.Errorf("failed close: errors %q", f.errs)
	}
}
