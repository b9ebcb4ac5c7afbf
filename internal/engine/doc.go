// Package engine runs ghostd's detection passes: inventory every namespace, classify, attribute, probe suspects and build the exporter's snapshot.
package engine
