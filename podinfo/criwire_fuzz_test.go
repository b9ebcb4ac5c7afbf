package podinfo

import (
	"bytes"
	"encoding/binary"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FuzzCRIAnswer feeds the hand-written CRI decoders (a runtime's answers are
// untrusted bytes from its socket) anything: they must not panic, every
// string they return must be bytes of the input (copied from a field, never
// read past it), and unframe must accept exactly one whole uncompressed
// message.
func FuzzCRIAnswer(f *testing.F) {
	for _, m := range []proto.Message{
		&runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{
			{Id: "sb-1", Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Uid: "u1", Namespace: "default"}, State: 1},
		}},
		&runtimeapi.PodSandboxStatusResponse{Info: map[string]string{"info": `{"pid":7}`}},
		&runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{
			{Id: "c-1", PodSandboxId: "sb-1", Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
				Labels: map[string]string{"io.kubernetes.pod.name": "web", "io.kubernetes.pod.namespace": "default"}},
		}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := func(what, s string) {
			if s != "" && !bytes.Contains(b, []byte(s)) {
				t.Fatalf("%s %q is not in the input", what, s)
			}
		}
		if sbs, err := decodeSandboxes(b); err == nil {
			for _, sb := range sbs {
				in("sandbox id", sb.id)
				if sb.meta != nil {
					in("pod name", sb.meta.name)
					in("pod uid", sb.meta.uid)
					in("pod namespace", sb.meta.namespace)
				}
			}
		}
		if st, err := decodeSandboxStatus(b); err == nil {
			for k, v := range st.info {
				in("info key", k)
				in("info value", v)
			}
		}
		if cs, err := decodeContainers(b); err == nil {
			for _, c := range cs {
				in("container id", c.id)
				in("sandbox id", c.podID)
				in("container name", c.name)
				in("pod", c.pod)
				in("pod namespace", c.podNamespace)
			}
		}
		msg, err := unframe(b)
		whole := len(b) >= 5 && b[0] == 0 && uint64(len(b)) == 5+uint64(binary.BigEndian.Uint32(b[1:5])) &&
			binary.BigEndian.Uint32(b[1:5]) <= maxCRIMessage
		if (err == nil) != whole {
			t.Fatalf("unframe(% x): error %v, but one whole message: %v", b, err, whole)
		}
		if err == nil && !bytes.Equal(msg, b[5:]) {
			t.Fatalf("unframe returned % x, want the message after the 5-byte prefix", msg)
		}
	})
}
