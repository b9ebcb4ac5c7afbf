package podinfo

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/ghostd/ghostd/internal/fakecri"
)

// TestCRIRequestsWire: the requests the client encodes by hand read, with
// the CRI's generated code, as the messages grpc-go's client sent.
func TestCRIRequestsWire(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    []byte
		got  proto.Message
		want proto.Message
	}{
		{"ListPodSandbox", stateFilterRequest(sandboxReady), &runtimeapi.ListPodSandboxRequest{}, &runtimeapi.ListPodSandboxRequest{
			Filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}},
		}},
		{"PodSandboxStatus", sandboxStatusRequest("sb-1", true), &runtimeapi.PodSandboxStatusRequest{},
			&runtimeapi.PodSandboxStatusRequest{PodSandboxId: "sb-1", Verbose: true}},
		{"ListContainers", stateFilterRequest(containerRunning), &runtimeapi.ListContainersRequest{}, &runtimeapi.ListContainersRequest{
			Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}},
		}},
	} {
		if err := proto.Unmarshal(tt.b, tt.got); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !proto.Equal(tt.got, tt.want) {
			t.Errorf("%s: sent %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	// The READY filter is an empty state message, but it must be there:
	// without it the runtime lists every sandbox.
	var req runtimeapi.ListPodSandboxRequest
	if err := proto.Unmarshal(stateFilterRequest(sandboxReady), &req); err != nil || req.GetFilter().GetState() == nil {
		t.Errorf("ListPodSandbox's READY filter is missing: %v, %v", &req, err)
	}
}

// TestCRIResponsesWire: the client reads the fields it uses from answers
// encoded by the CRI's generated code, with every other field set around
// them (skipped, as unknown fields are).
func TestCRIResponsesWire(t *testing.T) {
	labels := map[string]string{"app": "web", "io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.name": "cart"}
	for _, tt := range []struct {
		name   string
		msg    proto.Message
		decode func([]byte) (any, error)
		want   any
	}{{
		"ListPodSandbox",
		&runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{
			{Id: "sb-1", Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Uid: "u1", Namespace: "default", Attempt: 3},
				State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY, CreatedAt: 1 << 40, Labels: labels, Annotations: labels, RuntimeHandler: "runc"},
			{Id: "sb-2"},
		}},
		func(b []byte) (any, error) { return decodeSandboxes(b) },
		[]sandbox{{id: "sb-1", meta: &podMeta{name: "web", uid: "u1", namespace: "default"}, state: 1}, {id: "sb-2"}},
	}, {
		"PodSandboxStatus",
		&runtimeapi.PodSandboxStatusResponse{
			Status: &runtimeapi.PodSandboxStatus{
				Id: "sb-1", Metadata: &runtimeapi.PodSandboxMetadata{Name: "web"}, CreatedAt: 7,
				Network: &runtimeapi.PodSandboxNetworkStatus{Ip: "198.51.100.7"},
				Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER, TargetId: "x",
				}}},
				Labels: labels,
			},
			Info:               map[string]string{"info": `{"pid": 7}`, "other": ""},
			ContainersStatuses: []*runtimeapi.ContainerStatus{{Id: "c1", Labels: labels}},
			Timestamp:          9,
		},
		func(b []byte) (any, error) { return decodeSandboxStatus(b) },
		sandboxStatus{network: namespaceNode, info: map[string]string{"info": `{"pid": 7}`, "other": ""}},
	}, {
		"ListContainers",
		&runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{
			{Id: "c1", PodSandboxId: "sb-1", Metadata: &runtimeapi.ContainerMetadata{Name: "nginx", Attempt: 2},
				Image: &runtimeapi.ImageSpec{Image: "nginx:1"}, ImageRef: "sha256:1", State: runtimeapi.ContainerState_CONTAINER_RUNNING,
				CreatedAt: 5, Labels: labels, Annotations: map[string]string{"io.kubernetes.pod.name": "not-a-label"}, ImageId: "i"},
			{Id: "c2"},
		}},
		func(b []byte) (any, error) { return decodeContainers(b) },
		[]container{{id: "c1", podID: "sb-1", name: "nginx", podNamespace: "shop", pod: "cart"}, {id: "c2"}},
	}} {
		b, err := proto.Marshal(tt.msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tt.decode(b)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(sandbox{}, podMeta{}, sandboxStatus{}, container{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	for _, bad := range [][]byte{{0x0a, 0x05, 0x01}, {0x0a}, {0xff}} {
		if _, err := decodeSandboxes(bad); !errors.Is(err, errWire) {
			t.Errorf("decodeSandboxes(% x) err = %v, want errWire", bad, err)
		}
	}
}

// grpcList is what grpc-go's generated client answers to List's first
// call, for comparing error messages.
func grpcList(ctx context.Context, t *testing.T, sock string) error {
	conn, err := grpc.NewClient("passthrough:///"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = runtimeapi.NewRuntimeServiceClient(conn).ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	return err
}

// TestCRIErrorsAsGRPC: a runtime that is down, one without the CRI
// (Unimplemented) and one that answers too late fail with the one-line
// messages grpc-go's client gave.
func TestCRIErrorsAsGRPC(t *testing.T) {
	stale := staleSocket(t)
	bare := filepath.Join(t.TempDir(), "bare.sock") // gRPC, but no RuntimeService
	bln, err := net.Listen("unix", bare)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	go gs.Serve(bln)
	defer gs.Stop()

	slow := fakecri.Start(t)
	slow.SetDelay(2 * time.Second)

	for _, tt := range []struct {
		name, sock string
		timeout    time.Duration
		exact      bool  // grpc-go's whole message, not only its code
		want       error // also errors.Is
	}{
		{"down", stale, 5 * time.Second, true, nil},
		{"unimplemented", bare, 5 * time.Second, true, nil},
		{"deadline", slow.Sock, 200 * time.Millisecond, false, context.DeadlineExceeded},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
		want := grpcList(ctx, t, tt.sock)
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), tt.timeout)
		_, got := NewCRI("fake", tt.sock).List(ctx)
		cancel()
		if want == nil || got == nil {
			t.Fatalf("%s: grpc-go's err = %v, ours %v; want both to fail", tt.name, want, got)
		}
		w := "podinfo: fake: list pod sandboxes: " + want.Error()
		if !tt.exact { // grpc-go's description of a deadline varies with who noticed it first
			w = "podinfo: fake: list pod sandboxes: rpc error: code = " + status.Code(want).String() + " desc = context deadline exceeded"
		}
		if g := got.Error(); g != w {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, g, w)
		}
		if tt.want != nil && !errors.Is(got, tt.want) {
			t.Errorf("%s: %v is not %v", tt.name, got, tt.want)
		}
	}
}
