package nsthread

import (
	"errors"
	"testing"
)

type thing struct{ closed bool }

func (th *thing) close() error { th.closed = true; return nil }

// TestOpenDiscards: what open made is closed, and not returned, when the
// thread could not go back after it; nothing is closed when open failed.
func TestOpenDiscards(t *testing.T) {
	stuck := errors.New("restore netns")
	th := &thing{}
	stuckAfter := func(fn func() error) error { return errors.Join(fn(), stuck) }
	got, err := openIn(stuckAfter, func() (*thing, error) { return th, nil }, (*thing).close)
	if got != nil || !errors.Is(err, stuck) || !th.closed {
		t.Errorf("thread stuck after open: got %v, err %v, closed %t; want nil, the error, closed", got, err, th.closed)
	}
	failed := errors.New("open failed")
	th = &thing{}
	got, err = openIn(stuckAfter, func() (*thing, error) { return th, failed }, (*thing).close)
	if got != nil || !errors.Is(err, failed) || th.closed {
		t.Errorf("open failed: got %v, err %v, closed %t; want nil, open's error, not closed", got, err, th.closed)
	}
	th = &thing{}
	inPlace := func(fn func() error) error { return fn() }
	got, err = openIn(inPlace, func() (*thing, error) { return th, nil }, (*thing).close)
	if got != th || err != nil || th.closed {
		t.Errorf("open succeeded: got %v, err %v, closed %t; want it open", got, err, th.closed)
	}
}
