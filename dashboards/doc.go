// Package dashboards holds ghostd's Grafana dashboard (ghostd.json) and reads its panels and queries for tests.
package dashboards
