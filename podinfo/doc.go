// Package podinfo names network namespaces and sockets after the pods and containers that the node's container runtime (CRI or Docker Engine) reports.
package podinfo
