package inventory

// dialNamespace opens a sock_diag connection inside ns (see
// withNamespaceFD). The fd on ns.Path is closed on return: only the netlink
// socket keeps the namespace referenced.
func dialNamespace(ns *Namespace) (nsConn, error) {
	var c *Conn
	if err := withNamespaceFD(ns, func(fd int) (err error) {
		c, err = Dial(fd)
		return err
	}); err != nil {
		return nil, err
	}
	return c, nil
}
