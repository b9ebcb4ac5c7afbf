// Package probe sends keepalive-shaped, zero-payload TCP probes to suspect peers and turns their replies into verdicts.
package probe
