package fakecri

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod is a sandbox the server reports.
type Pod struct {
	ID, Namespace, Name, UID string
	NetnsPath                string // in the verbose info's runtime spec
	PID                      int    // in the verbose info
	HostNetwork              bool
	NotReady                 bool
}

// Container is a container the server reports.
type Container struct {
	ID, Name, PodID string
}

// Server is a CRI RuntimeService serving Pods and Containers; its other
// methods answer Unimplemented.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	Sock string

	srv *grpc.Server

	mu         sync.Mutex
	pods       []Pod
	containers []Container
	lists      int // ListPodSandbox calls
	delay      time.Duration
}

// SetDelay makes ListPodSandbox wait d before answering: a slow runtime.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Start serves on a unix socket in a temporary directory until t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{Sock: filepath.Join(t.TempDir(), "cri.sock")}
	ln, err := net.Listen("unix", s.Sock)
	if err != nil {
		t.Fatal(err)
	}
	s.srv = grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(s.srv, s)
	go s.srv.Serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// Stop stops serving and removes the socket.
func (s *Server) Stop() { s.srv.Stop() }

// Set replaces what the server reports.
func (s *Server) Set(pods []Pod, containers []Container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pods, s.containers = append([]Pod(nil), pods...), append([]Container(nil), containers...)
}

// Lists returns how many ListPodSandbox calls the server answered.
func (s *Server) Lists() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}

// Version implements runtimeapi.RuntimeServiceServer.
func (s *Server) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "fakecri", RuntimeVersion: "1", RuntimeApiVersion: "v1"}, nil
}

// ListPodSandbox implements runtimeapi.RuntimeServiceServer, honouring the
// state filter.
func (s *Server) ListPodSandbox(ctx context.Context, r *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	s.mu.Lock()
	d := s.delay
	s.mu.Unlock()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists++
	out := &runtimeapi.ListPodSandboxResponse{}
	for _, p := range s.pods {
		st := runtimeapi.PodSandboxState_SANDBOX_READY
		if p.NotReady {
			st = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
		}
		if f := r.GetFilter().GetState(); f != nil && f.GetState() != st {
			continue
		}
		out.Items = append(out.Items, &runtimeapi.PodSandbox{
			Id: p.ID, State: st, CreatedAt: 1,
			Metadata: &runtimeapi.PodSandboxMetadata{Name: p.Name, Namespace: p.Namespace, Uid: p.UID},
		})
	}
	return out, nil
}

// PodSandboxStatus implements runtimeapi.RuntimeServiceServer; its verbose
// info is shaped like containerd's.
func (s *Server) PodSandboxStatus(_ context.Context, r *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pods {
		if p.ID != r.GetPodSandboxId() {
			continue
		}
		mode := runtimeapi.NamespaceMode_POD
		if p.HostNetwork {
			mode = runtimeapi.NamespaceMode_NODE
		}
		resp := &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{
			Id:       p.ID,
			Metadata: &runtimeapi.PodSandboxMetadata{Name: p.Name, Namespace: p.Namespace, Uid: p.UID},
			Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
				Options: &runtimeapi.NamespaceOption{Network: mode},
			}},
		}}
		if r.GetVerbose() {
			info := map[string]any{"pid": p.PID, "processStatus": "running"}
			if p.NetnsPath != "" {
				info["runtimeSpec"] = map[string]any{"linux": map[string]any{"namespaces": []map[string]string{
					{"type": "pid"}, {"type": "network", "path": p.NetnsPath},
				}}}
			}
			b, _ := json.Marshal(info)
			resp.Info = map[string]string{"info": string(b)}
		}
		return resp, nil
	}
	return nil, status.Errorf(codes.NotFound, "sandbox %q not found", r.GetPodSandboxId())
}

// ListContainers implements runtimeapi.RuntimeServiceServer.
func (s *Server) ListContainers(context.Context, *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &runtimeapi.ListContainersResponse{}
	for _, c := range s.containers {
		out.Containers = append(out.Containers, &runtimeapi.Container{
			Id: c.ID, PodSandboxId: c.PodID, State: runtimeapi.ContainerState_CONTAINER_RUNNING,
			Metadata: &runtimeapi.ContainerMetadata{Name: c.Name},
		})
	}
	return out, nil
}
