//go:build !linux

package inventory

// walk finds nothing where there is no Linux procfs.
func (o *Owners) walk(netns uint64, found map[uint32]holder) {}

// cgroup2Root finds nothing where there is no Linux cgroup2.
func cgroup2Root() string { return "" }

// walkCgroups fails where there is no Linux cgroup2.
func walkCgroups(root string) (map[uint64]string, error) { return nil, ErrNotLinux }
