// Package reasontest holds privileged tests that drive real sockets on the test network into every reason the tracker reports.
package reasontest
