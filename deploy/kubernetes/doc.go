// Package kubernetes holds the manifests that run one ghostd per Kubernetes node and the tests that check them.
package kubernetes
