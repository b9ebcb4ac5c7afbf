//go:build !linux

package inventory

// dialNamespace fails where there are no Linux network namespaces.
func dialNamespace(ns *Namespace) (nsConn, error) {
	return nil, ErrNotLinux
}
