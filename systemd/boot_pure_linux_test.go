package systemd

import "testing"

func TestDebianMirror(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"deb822", map[string]string{"/etc/apt/sources.list.d/debian.sources": `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
`}, "http://deb.debian.org/debian"},
		{"one-line with options", map[string]string{"/etc/apt/sources.list": `# deb http://old.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main
`}, "http://mirror.example/debian"},
		{"security first, then the main suite", map[string]string{
			"/etc/apt/sources.list":          "deb http://security.example/debian-security bookworm-security main\n",
			"/etc/apt/sources.list.d/x.list": "deb http://mirror.example/debian bookworm main\n",
		}, "http://mirror.example/debian"},
		{"other distributions only", map[string]string{
			"/etc/apt/sources.list.d/node.sources": "Types: deb\nURIs: https://deb.example/node\nSuites: nodistro\n",
		}, ""},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		if got := debianMirror(tt.files); got != tt.want {
			t.Errorf("%s: debianMirror = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestMetricValue(t *testing.T) {
	const expo = `# HELP ghostd_config_last_reload_successful Whether the last reload succeeded.
# TYPE ghostd_config_last_reload_successful gauge
ghostd_config_last_reload_successful 1
ghostd_sockets{netns="host",family="inet",state="LISTEN"} 3
ghostd_up_total 2.5e+01
`
	for _, tt := range []struct {
		name string
		want float64
		ok   bool
	}{
		{"ghostd_config_last_reload_successful", 1, true},
		{"ghostd_up_total", 25, true},
		{"ghostd_sockets", 0, false}, // labelled samples are not matched
		{"ghostd_config_last_reload", 0, false},
	} {
		if got, ok := metricValue(expo, tt.name); got != tt.want || ok != tt.ok {
			t.Errorf("metricValue(%s) = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
