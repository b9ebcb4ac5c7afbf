package app

// Capability bits (include/uapi/linux/capability.h).
const (
	capDacReadSearch = 2
	capNetAdmin      = 12
	capNetRaw        = 13
	capSysPtrace     = 19
	capSysAdmin      = 21
	capPerfmon       = 38
	capBPF           = 39
)

// Capabilities is the effective capability set of this process.
type Capabilities struct {
	eff   uint64
	known bool // false where capabilities cannot be read (non-Linux)
}

// Has reports whether capability bit c is effective.
func (c Capabilities) Has(bit uint) bool { return !c.known || c.eff&(1<<bit) != 0 }

// MissingCap is a capability ghostd lacks and what that costs.
type MissingCap struct {
	Name   string
	Effect string
}

// Missing lists, in one line each, what the missing capabilities switch off
// and what keeps working. CAP_NET_ADMIN is only for killing: the kill policy
// checks it when it is turned on.
func (c Capabilities) Missing() []MissingCap {
	var out []MissingCap
	if !c.Has(capSysAdmin) {
		out = append(out, MissingCap{"CAP_SYS_ADMIN", "other network namespaces cannot be entered: they are listed with the error, this one is scanned"})
	}
	if !c.Has(capNetRaw) {
		out = append(out, MissingCap{"CAP_NET_RAW", "no probes can be sent: suspects are reported unprobed"})
	}
	if !(c.Has(capBPF) && c.Has(capPerfmon)) && !c.Has(capSysAdmin) {
		out = append(out, MissingCap{"CAP_BPF+CAP_PERFMON", "sequence numbers cannot be read: probes are blind"})
	}
	if !c.Has(capSysPtrace) {
		out = append(out, MissingCap{"CAP_SYS_PTRACE", "other users' processes cannot be attributed or borrowed from: owners show empty"})
	}
	return out
}

// Names returns the names of the effective capabilities ghostd cares about
// mapped to whether they are held, for the ghostd_capability metric.
func (c Capabilities) Names() map[string]bool {
	return map[string]bool{
		"CAP_DAC_READ_SEARCH": c.Has(capDacReadSearch),
		"CAP_NET_ADMIN":       c.Has(capNetAdmin),
		"CAP_NET_RAW":         c.Has(capNetRaw),
		"CAP_SYS_PTRACE":      c.Has(capSysPtrace),
		"CAP_SYS_ADMIN":       c.Has(capSysAdmin),
		"CAP_PERFMON":         c.Has(capPerfmon),
		"CAP_BPF":             c.Has(capBPF),
	}
}
