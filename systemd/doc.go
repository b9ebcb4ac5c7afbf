// Package systemd holds ghostd's unit file and the sd_notify readiness and watchdog glue.
package systemd
