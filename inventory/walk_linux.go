package inventory

import "github.com/ghostd/ghostd/inventory/bpfwalk"

// newOneWalker loads bpfwalk from the calling thread's namespace and
// returns it with the check of whether a namespace shares its tables.
func newOneWalker() (oneWalker, func(*Namespace) (bool, error), error) {
	w, err := bpfwalk.New()
	if err != nil {
		return nil, nil, err
	}
	covers := func(ns *Namespace) (cov bool, err error) {
		err = withNamespaceFD(ns, func(fd int) (err error) {
			cov, err = w.Covers(fd)
			return err
		})
		return cov, err
	}
	return w, covers, nil
}
