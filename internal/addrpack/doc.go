// Package addrpack stores an IP address without pointers, as 16 bytes and a
// kind, for tables the garbage collector should never scan.
package addrpack
