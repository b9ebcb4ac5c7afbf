package closer

import "sync"

// Close closes what *p holds with closeFn and sets *p to its zero value,
// both under mu, so that no method holding mu sees it half closed. When *p
// holds nothing (never opened, or closed before) it returns nil: a second
// Close is not an error.
func Close[T comparable](mu sync.Locker, p *T, closeFn func(T) error) error {
	mu.Lock()
	defer mu.Unlock()
	var zero T
	v := *p
	if v == zero {
		return nil
	}
	*p = zero
	return closeFn(v)
}
