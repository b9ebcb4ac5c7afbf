// Package tracker keeps per-socket history across scans and classifies sockets into the reasons that make them suspects.
package tracker
