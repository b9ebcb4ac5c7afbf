package podinfo

import (
	"context"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI lists pods and containers through the Kubernetes Container Runtime
// Interface (runtime.v1.RuntimeService) on a unix socket: containerd's,
// CRI-O's or cri-dockerd's. It only reads.
type CRI struct {
	name, path string

	mu   sync.Mutex
	conn *grpc.ClientConn
}

// NewCRI returns a CRI source for the socket at path; it dials on first use.
func NewCRI(runtime, path string) *CRI { return &CRI{name: runtime, path: path} }

// Runtime implements Source.
func (c *CRI) Runtime() string { return c.name }

func (c *CRI) client() (runtimeapi.RuntimeServiceClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		path := c.path
		conn, err := grpc.NewClient("passthrough:///"+path,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			}),
			// A node's listing is well below this; it bounds a broken runtime.
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
		)
		if err != nil {
			return nil, fmt.Errorf("podinfo: %s: %w", c.path, err)
		}
		c.conn = conn
	}
	return runtimeapi.NewRuntimeServiceClient(c.conn), nil
}

// List implements Source: every ready sandbox with its status (for the
// network namespace) and every running container. ctx bounds it all.
func (c *CRI) List(ctx context.Context) (Snapshot, error) {
	if !socketExists(c.path) {
		return Snapshot{}, fmt.Errorf("%s: %w", c.path, ErrNoSocket)
	}
	rs, err := c.client()
	if err != nil {
		return Snapshot{}, err
	}
	sbs, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}},
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("podinfo: %s: list pod sandboxes: %w", c.name, err)
	}
	var snap Snapshot
	pods := make(map[string]*runtimeapi.PodSandboxMetadata, len(sbs.GetItems()))
	podIndex := make(map[string]int, len(sbs.GetItems())) // sandbox id -> index in snap.Pods
	for _, sb := range sbs.GetItems() {
		md := sb.GetMetadata()
		if md == nil || sb.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
			continue
		}
		pods[sb.GetId()] = md
		p := Pod{Namespace: md.GetNamespace(), Name: md.GetName(), UID: md.GetUid()}
		st, err := rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.GetId(), Verbose: true})
		if err != nil {
			if ctx.Err() != nil {
				return Snapshot{}, fmt.Errorf("podinfo: %s: pod sandbox status: %w", c.name, err)
			}
			continue // removed since the listing
		}
		if st.GetStatus().GetLinux().GetNamespaces().GetOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE {
			continue // hostNetwork: the node's namespace is not the pod's to name
		}
		p.NetnsPath, p.PID = ParseVerboseInfo(st.GetInfo())
		p.IDs = []string{sb.GetId()}
		podIndex[sb.GetId()] = len(snap.Pods)
		snap.Pods = append(snap.Pods, p)
	}
	cs, err := rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}},
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("podinfo: %s: list containers: %w", c.name, err)
	}
	for _, ct := range cs.GetContainers() {
		k := Container{ID: ct.GetId(), Name: ct.GetMetadata().GetName()}
		if md := pods[ct.GetPodSandboxId()]; md != nil {
			k.PodNamespace, k.PodName = md.GetNamespace(), md.GetName()
		} else {
			k.PodNamespace = ct.GetLabels()["io.kubernetes.pod.namespace"]
			k.PodName = ct.GetLabels()["io.kubernetes.pod.name"]
		}
		if k.ID != "" && k.Name != "" {
			snap.Containers = append(snap.Containers, k)
			if i, ok := podIndex[ct.GetPodSandboxId()]; ok {
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
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}
