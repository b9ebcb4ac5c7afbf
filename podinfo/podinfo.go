package podinfo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Default runtime endpoints: containerd's and CRI-O's CRI sockets, and the
// Docker Engine's API socket. A default endpoint whose socket does not exist
// is skipped without a word; one given explicitly is always asked.
var DefaultEndpoints = []string{
	"/run/containerd/containerd.sock",
	"/run/crio/crio.sock",
	"/var/run/docker.sock",
}

// Pod is a pod sandbox as the runtime reports it.
type Pod struct {
	Namespace string // Kubernetes namespace
	Name      string
	UID       string
	// NetnsPath is the sandbox's network namespace file (containerd:
	// /var/run/netns/cni-…; Docker: /var/run/docker/netns/…), "" if unknown.
	NetnsPath string
	// PID is a process in the sandbox (the pause process), 0 if unknown; its
	// /proc/PID/ns/net is the namespace when NetnsPath cannot be opened
	// (ghostd in a pod that does not mount the runtime's netns directory).
	PID int
	// IDs are the sandbox's and its containers' ids. When neither NetnsPath
	// nor PID leads to a namespace (a runtime without verbose status), a
	// namespace held by a process whose root-owned cgroup names one of
	// these containers is the pod's.
	IDs []string
	// Docker is set for a plain Docker container, which has no pod: Name is
	// then the container's name and Namespace is "".
	Docker bool
}

// NetnsName is the name ghostd gives the pod's network namespace:
// "<namespace>/<pod>", or a plain Docker container's name.
func (p *Pod) NetnsName() string {
	if p.Namespace == "" {
		return p.Name
	}
	return p.Namespace + "/" + p.Name
}

// Container is a container as the runtime reports it.
type Container struct {
	ID           string // full id, as in the cgroup path
	Name         string
	PodNamespace string // "" outside a pod
	PodName      string
}

// Snapshot is what one runtime reported in one listing.
type Snapshot struct {
	Pods       []Pod
	Containers []Container
}

// Source is one container runtime endpoint.
type Source interface {
	// Runtime names the endpoint in logs and metrics: "containerd", "crio",
	// "docker", or the socket's base name.
	Runtime() string
	// List returns the runtime's ready pod sandboxes and running containers.
	List(ctx context.Context) (Snapshot, error)
	Close() error
}

// ErrNoSocket reports an endpoint whose socket file does not exist.
var ErrNoSocket = errors.New("podinfo: runtime socket does not exist")

// NewSource returns the Source for an endpoint: a path ending in
// "docker.sock" (or any path prefixed "docker:") speaks the Docker Engine
// API, any other path (optionally prefixed "unix://" or "cri:") speaks CRI.
func NewSource(endpoint string) (Source, error) {
	ep := strings.TrimSpace(endpoint)
	docker := false
	switch {
	case strings.HasPrefix(ep, "docker:"):
		docker, ep = true, strings.TrimPrefix(ep, "docker:")
	case strings.HasPrefix(ep, "cri:"):
		ep = strings.TrimPrefix(ep, "cri:")
	}
	ep = strings.TrimPrefix(ep, "unix://")
	if !strings.HasPrefix(ep, "/") {
		return nil, fmt.Errorf("podinfo: runtime endpoint %q: want an absolute unix socket path", endpoint)
	}
	ep = filepath.Clean(ep)
	if strings.HasSuffix(ep, "docker.sock") {
		docker = true
	}
	if docker {
		return NewDocker(ep), nil
	}
	return NewCRI(runtimeName(ep), ep), nil
}

// runtimeName names a socket path: containerd.sock is "containerd",
// crio.sock "crio", anything else its base name without ".sock".
func runtimeName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".sock")
}

// socketExists reports whether path exists; a stat error other than "not
// there" counts as present, so that the dial reports it.
func socketExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, os.ErrNotExist)
}
