// Package alerts holds ghostd's Prometheus alerting and recording rules with their promtool unit tests.
package alerts
