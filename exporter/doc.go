// Package exporter serves ghostd's findings as Prometheus metrics, JSON and HTML, and applies the kill policy to confirmed ghosts.
package exporter
