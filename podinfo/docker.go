package podinfo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Docker lists containers through the Docker Engine API on a unix socket.
// Kubernetes pods run by dockershim or cri-dockerd are recognised by their
// io.kubernetes.* labels; any other container that has its own network
// namespace is a "pod" named after the container. It only reads.
type Docker struct {
	path   string
	client *http.Client
}

// NewDocker returns a Docker source for the API socket at path.
func NewDocker(path string) *Docker {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:    1,
		IdleConnTimeout: 0,
	}
	return &Docker{path: path, client: &http.Client{Transport: tr}}
}

// Runtime implements Source.
func (d *Docker) Runtime() string { return "docker" }

// Labels dockershim and cri-dockerd put on the containers they run.
const (
	labelPodName      = "io.kubernetes.pod.name"
	labelPodNamespace = "io.kubernetes.pod.namespace"
	labelPodUID       = "io.kubernetes.pod.uid"
	labelContainer    = "io.kubernetes.container.name"
	labelDockerType   = "io.kubernetes.docker.type"
)

// dockerSummary is an entry of GET /containers/json.
type dockerSummary struct {
	ID         string            `json:"Id"`
	Names      []string          `json:"Names"`
	Labels     map[string]string `json:"Labels"`
	HostConfig struct {
		NetworkMode string `json:"NetworkMode"`
	} `json:"HostConfig"`
}

// dockerInspect is the part of GET /containers/{id}/json used here.
type dockerInspect struct {
	State struct {
		Pid int `json:"Pid"`
	} `json:"State"`
	NetworkSettings struct {
		SandboxKey string `json:"SandboxKey"`
	} `json:"NetworkSettings"`
}

// maxDockerBody bounds an API answer read.
const maxDockerBody = 32 << 20

func (d *Docker) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, maxDockerBody)).Decode(v)
}

// List implements Source.
func (d *Docker) List(ctx context.Context) (Snapshot, error) {
	if !socketExists(d.path) {
		return Snapshot{}, fmt.Errorf("%s: %w", d.path, ErrNoSocket)
	}
	var list []dockerSummary
	if err := d.get(ctx, "/containers/json", &list); err != nil {
		return Snapshot{}, fmt.Errorf("podinfo: docker: list containers: %w", err)
	}
	var snap Snapshot
	for _, c := range list {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		podName, podNS := c.Labels[labelPodName], c.Labels[labelPodNamespace]
		kube := podName != "" && podNS != ""
		mode := c.HostConfig.NetworkMode
		ownNetns := mode != "host" && mode != "none" && !strings.HasPrefix(mode, "container:")
		switch {
		case kube && c.Labels[labelDockerType] == "podsandbox":
			if ownNetns {
				p := Pod{Namespace: podNS, Name: podName, UID: c.Labels[labelPodUID]}
				if d.inspect(ctx, c.ID, &p) == nil {
					snap.Pods = append(snap.Pods, p)
				} else if ctx.Err() != nil {
					return Snapshot{}, fmt.Errorf("podinfo: docker: inspect: %w", ctx.Err())
				}
			}
			continue // the sandbox is no container a user named
		case kube:
			if n := c.Labels[labelContainer]; n != "" {
				name = n
			}
			snap.Containers = append(snap.Containers, Container{ID: c.ID, Name: name, PodNamespace: podNS, PodName: podName})
			continue
		}
		if name == "" {
			continue
		}
		snap.Containers = append(snap.Containers, Container{ID: c.ID, Name: name})
		if ownNetns {
			p := Pod{Name: name, Docker: true}
			if d.inspect(ctx, c.ID, &p) == nil {
				snap.Pods = append(snap.Pods, p)
			} else if ctx.Err() != nil {
				return Snapshot{}, fmt.Errorf("podinfo: docker: inspect: %w", ctx.Err())
			}
		}
	}
	return snap, nil
}

// inspect fills p's namespace path and pid from the container's details.
func (d *Docker) inspect(ctx context.Context, id string, p *Pod) error {
	var in dockerInspect
	if err := d.get(ctx, "/containers/"+url.PathEscape(id)+"/json", &in); err != nil {
		return err
	}
	p.NetnsPath, p.PID = in.NetworkSettings.SandboxKey, in.State.Pid
	return nil
}

// Close implements Source.
func (d *Docker) Close() error {
	d.client.CloseIdleConnections()
	return nil
}
