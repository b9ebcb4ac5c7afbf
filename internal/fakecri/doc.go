// Package fakecri serves the read-only part of the CRI RuntimeService (the calls ghostd makes) over a real gRPC unix socket, for tests.
package fakecri
