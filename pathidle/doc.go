// Package pathidle estimates, per destination, the idle age at which the network path forgets a TCP flow, from the idle ages at which probes found connections alive or dead.
package pathidle
