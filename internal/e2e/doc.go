// Package e2e runs the ghostd binary against the project's test network and checks what users see: verdicts, metrics, pages, kills and exit codes.
package e2e
