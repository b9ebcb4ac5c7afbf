// Package livetest runs the Grafana dashboard's queries and the alert rules through a real Prometheus scraping a real ghostd.
package livetest
