package podinfo

import (
	"strings"
	"testing"
)

func TestParseVerboseInfo(t *testing.T) {
	for _, tt := range []struct {
		name string
		info map[string]string
		path string
		pid  int
	}{
		{"containerd", map[string]string{"info": `{"pid":4242,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1"}]}}}`}, "/var/run/netns/cni-1", 4242},
		{"pid only", map[string]string{"info": `{"pid":7}`}, "", 7},
		{"relative path ignored", map[string]string{"info": `{"runtimeSpec":{"linux":{"namespaces":[{"type":"network","path":"netns/x"}]}}}`}, "", 0},
		{"not json", map[string]string{"info": `pid=7`}, "", 0},
		{"second key", map[string]string{"a": `{}`, "b": `{"pid":9}`}, "", 9},
		{"empty", nil, "", 0},
	} {
		path, pid := ParseVerboseInfo(tt.info)
		if path != tt.path || pid != tt.pid {
			t.Errorf("%s: = %q, %d; want %q, %d", tt.name, path, pid, tt.path, tt.pid)
		}
	}
}

// FuzzParseVerboseInfo: any info value yields an absolute path or none, and
// a non-negative pid, without panicking.
func FuzzParseVerboseInfo(f *testing.F) {
	f.Add(`{"pid":4242,"runtimeSpec":{"linux":{"namespaces":[{"type":"network","path":"/var/run/netns/cni-1"}]}}}`)
	f.Add(`{"pid":-1}`)
	f.Add(`{`)
	f.Fuzz(func(t *testing.T, v string) {
		path, pid := ParseVerboseInfo(map[string]string{"info": v})
		if path != "" && !strings.HasPrefix(path, "/") || pid < 0 {
			t.Errorf("ParseVerboseInfo(%q) = %q, %d", v, path, pid)
		}
	})
}
