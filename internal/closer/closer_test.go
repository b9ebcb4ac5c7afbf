package closer

import (
	"errors"
	"sync"
	"testing"
)

type res struct {
	closed int
	err    error
}

func (r *res) close() error {
	r.closed++
	return r.err
}

// TestCloseOnce: concurrent Closes close the resource once, the one that
// did returns its error, the others and later ones return nil, and the
// field is empty afterwards.
func TestCloseOnce(t *testing.T) {
	boom := errors.New("boom")
	var mu sync.Mutex
	r := &res{err: boom}
	held := r
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range cap(errs) {
		wg.Go(func() { errs <- Close(&mu, &held, (*res).close) })
	}
	wg.Wait()
	close(errs)
	var got []error
	for err := range errs {
		if err != nil {
			got = append(got, err)
		}
	}
	if r.closed != 1 || len(got) != 1 || !errors.Is(got[0], boom) {
		t.Errorf("closed %d times, errors %v; want once, [boom]", r.closed, got)
	}
	if held != nil {
		t.Errorf("field still holds %p", held)
	}
	if err := Close(&mu, &held, (*res).close); err != nil || r.closed != 1 {
		t.Errorf("Close after Close: %v, closed %d times", err, r.closed)
	}
}

// TestCloseUnderLock: the close runs while mu is held.
func TestCloseUnderLock(t *testing.T) {
	var mu sync.Mutex
	held := &res{}
	locked := false
	err := Close(&mu, &held, func(*res) error {
		locked = !mu.TryLock()
		return nil
	})
	if err != nil || !locked {
		t.Errorf("err %v, mu held during close %v", err, locked)
	}
	if !mu.TryLock() {
		t.Error("mu still held after Close")
	}
}

// TestCloseNothing: an empty field (never opened) is not closed.
func TestCloseNothing(t *testing.T) {
	var mu sync.Mutex
	var held *res
	calls := 0
	if err := Close(&mu, &held, func(*res) error { calls++; return errors.New("closed nil") }); err != nil || calls != 0 {
		t.Errorf("err %v after %d calls", err, calls)
	}
}
