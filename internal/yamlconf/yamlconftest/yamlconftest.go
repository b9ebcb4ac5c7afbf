// Package yamlconftest checks a configuration type's Validate: the exact error text, and an error that names its key.
package yamlconftest

import (
	"errors"
	"testing"

	"github.com/ghostd/ghostd/internal/yamlconf"
)

// Case breaks one field of a valid configuration and gives the error
// Validate must return for it.
type Case[T any] struct {
	Name string
	Mod  func(*T)
	Want string
}

// Validate checks that valid() passes Validate, and that each case, applied
// to a fresh valid(), fails it with exactly Want in a *yamlconf.KeyError
// that names its key.
func Validate[T any, P interface {
	*T
	Validate() error
}](t *testing.T, valid func() T, cases []Case[T]) {
	t.Helper()
	v := valid()
	if err := P(&v).Validate(); err != nil {
		t.Fatalf("the valid configuration fails Validate: %v", err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			v := valid()
			c.Mod(&v)
			err := P(&v).Validate()
			if err == nil || err.Error() != c.Want {
				t.Fatalf("Validate() = %v, want %q", err, c.Want)
			}
			var ke *yamlconf.KeyError
			if !errors.As(err, &ke) || ke.Key == "" {
				t.Errorf("Validate() = %#v, want a *yamlconf.KeyError naming the key", err)
			}
		})
	}
}
