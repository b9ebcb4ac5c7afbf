// Package wire builds and parses the IPv4, IPv6, TCP and ICMP packets of ghostd's probes and filters their replies: pure, length-checked code with no syscalls.
package wire
