package probe

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/nsthread"
	"github.com/ghostd/ghostd/probe/internal/wire"
)

// natDumpMin is the fewest connections of one namespace for which one dump
// of its conntrack table may replace a lookup per connection. Measured (see
// BenchmarkNATLookup): a lookup costs ~20 µs of CPU, a dump ~9 µs per entry
// in the namespace's table whatever the targets, so a dump pays off once the
// targets are about half the table; below natDumpMin, lookups cost under
// 20 ms anyway.
const natDumpMin = 1024

// natDump reports whether to dump the table rather than look each
// connection up, given the namespace's entry count (-1: unknown).
func natDump(conns, entries int) bool {
	return conns >= natDumpMin && entries >= 0 && 2*conns >= entries
}

// ctTimeout bounds each wait for the kernel's answer.
const ctTimeout = 2 * time.Second

// lookupNAT asks conntrack in the namespace at nsPath ("" = ours) how each
// connection in conns (as the socket sends: local → remote) is translated;
// out[i] is the zero natFlow for one that is not (or has no entry). The
// netlink socket is created inside the namespace, as the raw probe sockets
// are (a locked thread and setns(fd, CLONE_NEWNET)); conntrack answers it
// only with CAP_NET_ADMIN there.
func lookupNAT(nsPath string, conns []flowKey) ([]natFlow, error) {
	return lookupNATWith(nsPath, conns, nil)
}

// lookupNATWith is lookupNAT; a non-nil dump forces the choice between one
// dump and a lookup per connection.
func lookupNATWith(nsPath string, conns []flowKey, dump *bool) ([]natFlow, error) {
	if len(conns) == 0 {
		return nil, nil
	}
	if _, err := os.Stat("/sys/module/nf_conntrack"); err != nil {
		// No conntrack, no NAT; and asking would load the module.
		return nil, errNoConntrack
	}
	var fd int
	var proc *os.File // the namespace's /proc/net/nf_conntrack, if any
	entries := -1
	open := func() (err error) {
		// /proc/sys/net is the opening thread's namespace's.
		if b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count"); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				entries = n
			}
		}
		if entries == 0 {
			return nil // nothing tracked, nothing translated: nothing to open
		}
		// Without CAP_NET_ADMIN, ctnetlink refuses us; the namespace's
		// table as text is then the fallback (the default unit has
		// CAP_DAC_READ_SEARCH). Opened here: it is the thread's namespace's.
		if f, err := os.Open("/proc/thread-self/net/nf_conntrack"); err == nil {
			proc = f
		}
		fd, err = openCTSocket()
		if err != nil && proc != nil {
			proc.Close()
			proc = nil
		}
		return err
	}
	err := nsthread.InNetnsAt(nsPath, open)
	if err != nil {
		return nil, err
	}
	if entries == 0 {
		// An empty table (conntrack unused in this namespace) translates
		// nothing: spare the lookups.
		return make([]natFlow, len(conns)), nil
	}
	defer unix.Close(fd)
	if proc != nil {
		defer proc.Close()
	}
	c := ctConn{fd: fd, buf: make([]byte, 64<<10)}
	var out []natFlow
	if (dump == nil && natDump(len(conns), entries)) || (dump != nil && *dump) {
		out, err = c.byDump(conns)
	} else {
		out, err = c.byGet(conns)
	}
	if errors.Is(err, unix.EPERM) && proc != nil {
		pout, perr := natFromProc(proc, conns)
		if perr == nil {
			return pout, fmt.Errorf("%w (%w)", errCTViaProc, err)
		}
		err = errors.Join(err, perr)
	}
	return out, err
}

func openCTSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return -1, fmt.Errorf("probe: conntrack socket: %w", os.NewSyscallError("socket", err))
	}
	tv := unix.NsecToTimeval(ctTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("probe: conntrack socket: %w", os.NewSyscallError("setsockopt", err))
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("probe: conntrack socket: %w", os.NewSyscallError("bind", err))
	}
	return fd, nil
}

// ctConn is a ctnetlink socket in one namespace; one request at a time.
type ctConn struct {
	fd  int
	seq uint32
	req []byte
	buf []byte
}

// query sends one request and reads its answers until the ACK or DONE.
func (c *ctConn) query(k flowKey, dump bool, fn func(ctEntry)) error {
	c.seq++
	var err error
	if c.req, err = appendCTRequest(c.req[:0], c.seq, k, dump); err != nil {
		return err
	}
	if err := unix.Sendto(c.fd, c.req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return os.NewSyscallError("sendto", err)
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("recvfrom", err)
		}
		done, err := parseCTReply(c.buf[:n], c.seq, fn)
		if err != nil || done {
			return err
		}
	}
}

// byGet looks each connection up by its tuple (IPCTNL_MSG_CT_GET).
func (c *ctConn) byGet(conns []flowKey) ([]natFlow, error) {
	out := make([]natFlow, len(conns))
	for i, k := range conns {
		err := c.query(k, false, func(e ctEntry) {
			if e.proto == wire.ProtoTCP {
				out[i], _ = natFromEntry(k, e.orig, e.reply)
			}
		})
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("probe: conntrack get %s→%s: %w", k.local, k.remote, err)
		}
	}
	return out, nil
}

// byDump reads the namespace's whole table once and matches every
// connection against it.
func (c *ctConn) byDump(conns []flowKey) ([]natFlow, error) {
	want := make(map[flowKey]int, len(conns))
	for i, k := range conns {
		want[k] = i
	}
	out := make([]natFlow, len(conns))
	err := c.query(flowKey{}, true, func(e ctEntry) {
		if e.proto != wire.ProtoTCP {
			return
		}
		orig, reply := e.orig.unmapped(), e.reply.unmapped()
		for _, d := range [2]ctTuple{orig, reply} {
			k := newFlowKey(d.src, d.dst)
			if i, ok := want[k]; ok {
				out[i], _ = natFromEntry(k, orig, reply)
			}
		}
	})
	if err != nil {
		return out, fmt.Errorf("probe: conntrack dump: %w", err)
	}
	return out, nil
}
