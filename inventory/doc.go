// Package inventory reads the TCP socket table of every network namespace through netlink sock_diag, and destroys sockets with SOCK_DESTROY.
package inventory
