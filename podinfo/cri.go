package podinfo

import (
	"context"
	"fmt"
	"net/http"
	"sync"
)

// CRI lists pods and containers through the Kubernetes Container Runtime
// Interface (runtime.v1.RuntimeService) on a unix socket: containerd's,
// CRI-O's or cri-dockerd's. It only reads, and speaks the three calls it
// makes itself (crirpc.go, criwire.go) rather than through gRPC's library
// and the CRI's generated code, which cost the daemon binary and memory.
type CRI struct {
	name, path string

	mu     sync.Mutex
	client *http.Client
}

// NewCRI returns a CRI source for the socket at path; it dials on first use.
func NewCRI(runtime, path string) *CRI { return &CRI{name: runtime, path: path} }

// Runtime implements Source.
func (c *CRI) Runtime() string { return c.name }

func (c *CRI) httpClient() *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		c.client = &http.Client{Transport: rpcTransport(c.path)}
	}
	return c.client
}

// List implements Source: every ready sandbox with its status (for the
// network namespace) and every running container. ctx bounds it all.
func (c *CRI) List(ctx context.Context) (Snapshot, error) {
	if !socketExists(c.path) {
		return Snapshot{}, fmt.Errorf("%s: %w", c.path, ErrNoSocket)
	}
	hc := c.httpClient()
	b, err := unaryCall(ctx, hc, "ListPodSandbox", stateFilterRequest(sandboxReady))
	if err == nil {
		var sbs []sandbox
		sbs, err = decodeSandboxes(b)
		if err == nil {
			return c.list(ctx, hc, sbs)
		}
	}
	return Snapshot{}, fmt.Errorf("podinfo: %s: list pod sandboxes: %w", c.name, err)
}

// list completes List with the sandboxes' statuses and the containers.
func (c *CRI) list(ctx context.Context, hc *http.Client, sbs []sandbox) (Snapshot, error) {
	var snap Snapshot
	pods := make(map[string]*podMeta, len(sbs))
	podIndex := make(map[string]int, len(sbs)) // sandbox id -> index in snap.Pods
	for _, sb := range sbs {
		md := sb.meta
		if md == nil || sb.state != sandboxReady {
			continue
		}
		pods[sb.id] = md
		p := Pod{Namespace: md.namespace, Name: md.name, UID: md.uid}
		b, err := unaryCall(ctx, hc, "PodSandboxStatus", sandboxStatusRequest(sb.id, true))
		var st sandboxStatus
		if err == nil {
			st, err = decodeSandboxStatus(b)
		}
		if err != nil {
			if ctx.Err() != nil {
				return Snapshot{}, fmt.Errorf("podinfo: %s: pod sandbox status: %w", c.name, err)
			}
			continue // removed since the listing
		}
		if st.network == namespaceNode {
			continue // hostNetwork: the node's namespace is not the pod's to name
		}
		p.NetnsPath, p.PID = ParseVerboseInfo(st.info)
		p.IDs = []string{sb.id}
		podIndex[sb.id] = len(snap.Pods)
		snap.Pods = append(snap.Pods, p)
	}
	b, err := unaryCall(ctx, hc, "ListContainers", stateFilterRequest(containerRunning))
	var cs []container
	if err == nil {
		cs, err = decodeContainers(b)
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("podinfo: %s: list containers: %w", c.name, err)
	}
	for _, ct := range cs {
		k := Container{ID: ct.id, Name: ct.name}
		if md := pods[ct.podID]; md != nil {
			k.PodNamespace, k.PodName = md.namespace, md.name
		} else {
			k.PodNamespace, k.PodName = ct.podNamespace, ct.pod
		}
		if k.ID != "" && k.Name != "" {
			snap.Containers = append(snap.Containers, k)
			if i, ok := podIndex[ct.podID]; ok {
				snap.Pods[i].IDs = append(snap.Pods[i].IDs, k.ID)
			}
		}
	}
	return snap, nil
}

// Close implements Source.
func (c *CRI) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		c.client.CloseIdleConnections()
		c.client = nil
	}
	return nil
}
