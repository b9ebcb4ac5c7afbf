// Package testnet builds the project's test network out of network namespaces joined by veth pairs.
package testnet
