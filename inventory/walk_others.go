//go:build !linux

package inventory

// newOneWalker fails where there is no BPF.
func newOneWalker() (oneWalker, func(*Namespace) (bool, error), error) {
	return nil, nil, ErrNotLinux
}
