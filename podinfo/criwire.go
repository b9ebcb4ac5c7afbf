package podinfo

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file is the protobuf wire format of the few CRI messages (package
// runtime.v1, k8s.io/cri-api's api.proto) the client sends and reads:
// only the fields podinfo uses are decoded, the rest are skipped, as any
// protobuf reader skips fields it does not know.

// CRI enum values podinfo uses.
const (
	sandboxReady     = 0 // PodSandboxState SANDBOX_READY
	containerRunning = 1 // ContainerState CONTAINER_RUNNING
	namespaceNode    = 2 // NamespaceMode NODE
)

// stateFilterRequest encodes ListPodSandboxRequest and ListContainersRequest
// with only their filter's state set: {filter(1): {state(2): {state(1)}}}.
// The state message is sent even when its value is the zero one (READY):
// its presence is what filters.
func stateFilterRequest(state uint64) []byte {
	var value []byte
	if state != 0 {
		value = protowire.AppendTag(value, 1, protowire.VarintType)
		value = protowire.AppendVarint(value, state)
	}
	filter := protowire.AppendTag(nil, 2, protowire.BytesType)
	filter = protowire.AppendBytes(filter, value)
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(b, filter)
}

// sandboxStatusRequest encodes PodSandboxStatusRequest{pod_sandbox_id(1), verbose(2)}.
func sandboxStatusRequest(id string, verbose bool) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendString(b, id)
	if verbose {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	return b
}

var errWire = errors.New("podinfo: malformed CRI message")

// eachField calls fn for every field of the message b: v holds a
// length-delimited field's bytes, n a varint's value; other wire types are
// skipped.
func eachField(b []byte, fn func(num protowire.Number, v []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return errWire
		}
		b = b[l:]
		var v []byte
		var n uint64
		switch typ {
		case protowire.BytesType:
			v, l = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			n, l = protowire.ConsumeVarint(b)
		default:
			l = protowire.ConsumeFieldValue(num, typ, b)
		}
		if l < 0 {
			return errWire
		}
		b = b[l:]
		if typ != protowire.BytesType && typ != protowire.VarintType {
			continue
		}
		if err := fn(num, v, n); err != nil {
			return err
		}
	}
	return nil
}

// podMeta is PodSandboxMetadata{name(1), uid(2), namespace(3)}.
type podMeta struct{ name, uid, namespace string }

func (m *podMeta) decode(b []byte) error {
	return eachField(b, func(num protowire.Number, v []byte, _ uint64) error {
		switch num {
		case 1:
			m.name = string(v)
		case 2:
			m.uid = string(v)
		case 3:
			m.namespace = string(v)
		}
		return nil
	})
}

// sandbox is a PodSandbox{id(1), metadata(2), state(3)}; meta is nil when
// the message had none.
type sandbox struct {
	id    string
	meta  *podMeta
	state uint64
}

// decodeList decodes the repeated message field 1 of a list answer, each
// element with fill.
func decodeList[T any](b []byte, fill func(x *T) func(protowire.Number, []byte, uint64) error) ([]T, error) {
	var out []T
	err := eachField(b, func(num protowire.Number, v []byte, _ uint64) error {
		if num != 1 {
			return nil
		}
		out = append(out, *new(T))
		return eachField(v, fill(&out[len(out)-1]))
	})
	return out, err
}

// decodeSandboxes decodes ListPodSandboxResponse{items(1)}.
func decodeSandboxes(b []byte) ([]sandbox, error) {
	return decodeList(b, func(sb *sandbox) func(protowire.Number, []byte, uint64) error {
		return func(num protowire.Number, v []byte, n uint64) error {
			switch num {
			case 1:
				sb.id = string(v)
			case 2:
				if sb.meta == nil {
					sb.meta = &podMeta{}
				}
				return sb.meta.decode(v)
			case 3:
				sb.state = n
			}
			return nil
		}
	})
}

// sandboxStatus is what podinfo reads of a PodSandboxStatusResponse: the
// sandbox's network namespace mode (status(1).linux(6).namespaces(1)
// .options(2).network(1)) and the verbose info map (info(2)).
type sandboxStatus struct {
	network uint64
	info    map[string]string
}

func decodeSandboxStatus(b []byte) (sandboxStatus, error) {
	var st sandboxStatus
	// path is the field numbers from the response down to NamespaceOption.
	path := [...]protowire.Number{1, 6, 1, 2}
	var network func(depth int) func(protowire.Number, []byte, uint64) error
	network = func(depth int) func(protowire.Number, []byte, uint64) error {
		return func(num protowire.Number, v []byte, n uint64) error {
			switch {
			case depth == len(path):
				if num == 1 {
					st.network = n
				}
			case num == path[depth]:
				return eachField(v, network(depth+1))
			case depth == 0 && num == 2:
				k, val, err := decodeMapEntry(v)
				if st.info == nil {
					st.info = map[string]string{}
				}
				st.info[k] = val
				return err
			}
			return nil
		}
	}
	return st, eachField(b, network(0))
}

// decodeMapEntry decodes one entry of a map<string, string>: key(1), value(2).
func decodeMapEntry(b []byte) (k, v string, err error) {
	err = eachField(b, func(num protowire.Number, f []byte, _ uint64) error {
		switch num {
		case 1:
			k = string(f)
		case 2:
			v = string(f)
		}
		return nil
	})
	return k, v, err
}

// container is what podinfo reads of a Container: id(1),
// pod_sandbox_id(2), metadata(3).name(1) and the two pod labels of
// labels(8).
type container struct {
	id, podID, name   string
	podNamespace, pod string
}

// decodeContainers decodes ListContainersResponse{containers(1)}.
func decodeContainers(b []byte) ([]container, error) {
	return decodeList(b, func(c *container) func(protowire.Number, []byte, uint64) error {
		return func(num protowire.Number, v []byte, _ uint64) error {
			switch num {
			case 1:
				c.id = string(v)
			case 2:
				c.podID = string(v)
			case 3:
				return eachField(v, func(num protowire.Number, v []byte, _ uint64) error {
					if num == 1 {
						c.name = string(v)
					}
					return nil
				})
			case 8:
				k, val, err := decodeMapEntry(v)
				switch k {
				case labelPodNamespace:
					c.podNamespace = val
				case labelPodName:
					c.pod = val
				}
				return err
			}
			return nil
		}
	})
}
