// Package probetest forges the packets that tests of ghostd's probes send (segments, RSTs, ICMP errors), built by the probes' own codec.
package probetest
