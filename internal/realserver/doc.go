// Package realserver runs Debian's PostgreSQL, Redis and nginx, and a Go server on Go's defaults, as processes inside test network namespaces, with clients that speak their protocols.
package realserver
