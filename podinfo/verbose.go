package podinfo

import (
	"encoding/json"
	"slices"
)

// verboseInfo is the part of a verbose PodSandboxStatus info value that
// names the sandbox's network namespace: containerd and CRI-O put the OCI
// runtime spec and the sandbox's pid in it.
type verboseInfo struct {
	PID         int `json:"pid"`
	RuntimeSpec struct {
		Linux struct {
			Namespaces []struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"runtimeSpec"`
}

// maxVerboseInfo bounds the info value parsed: a sandbox's spec is a few KiB.
const maxVerboseInfo = 1 << 20

// ParseVerboseInfo returns the network namespace path and the sandbox pid
// found in a verbose PodSandboxStatus info map ("" and 0 when absent). Keys
// are read in sorted order ("info" is containerd's and CRI-O's), and the
// first value naming a path or a pid wins. Malformed values are skipped.
func ParseVerboseInfo(info map[string]string) (netns string, pid int) {
	keys := make([]string, 0, len(info))
	for k := range info {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := info[k]
		if len(v) > maxVerboseInfo || len(v) == 0 || v[0] != '{' {
			continue
		}
		var vi verboseInfo
		if json.Unmarshal([]byte(v), &vi) != nil {
			continue
		}
		for _, ns := range vi.RuntimeSpec.Linux.Namespaces {
			if ns.Type == "network" && len(ns.Path) > 1 && ns.Path[0] == '/' {
				netns = ns.Path
				break
			}
		}
		if vi.PID > 0 {
			pid = vi.PID
		}
		if netns != "" || pid != 0 {
			return netns, pid
		}
	}
	return "", 0
}
