package exporter

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// bigSnapshot has 200 namespaces and 10,000 suspects.
func bigSnapshot() *Snapshot {
	snap := fixtureSnapshot()
	base := snap.Doc.Sessions[0]
	snap.Doc.Sessions = snap.Doc.Sessions[:0]
	snap.Doc.Namespaces = snap.Doc.Namespaces[:0]
	for n := range 200 {
		name := fmt.Sprintf("pid-app-%d", n)
		snap.Doc.Namespaces = append(snap.Doc.Namespaces, NamespaceStatus{Netns: name, NetnsInode: uint64(n), Sockets: 500, Kind: "process"})
		for i := range 50 {
			ss := base
			ss.Netns, ss.Cookie = name, uint64(n*50+i)
			ss.Ghost = i%5 == 0
			snap.Doc.Sessions = append(snap.Doc.Sessions, ss)
		}
	}
	return snap
}

func BenchmarkGather(b *testing.B) {
	s := NewStore(testBld, nil)
	s.Publish(bigSnapshot())
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHandler(b *testing.B) {
	s := NewStore(testBld, nil)
	s.Publish(bigSnapshot())
	h := NewHandler(s, HandlerOptions{})
	for _, p := range []string{"/", "/api/v1/sessions", "/api/v1/sessions?ghost=true&netns=pid-app-7"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}

// BenchmarkAppendJSON encodes one session as `ghostd scan --all --json`
// lists 200 000 of them: a healthy socket, unprobed, with an owner.
func BenchmarkAppendJSON(b *testing.B) {
	s := Session{
		Netns: "gd-scan-1a2b3c", NetnsInode: 4026532247, Family: "inet", State: "ESTABLISHED",
		Local: "127.0.0.1:56820", Remote: "127.0.0.1:26239", Cookie: 32852, Inode: 112282, PID: 10904,
		Comm: "connfarm", IdleSeconds: 42.236, Reasons: []string{}, Verdict: "unprobed", KernelDeadlineBasis: "none",
	}
	var buf []byte
	var err error
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = s.AppendJSON(buf[:0], "    ", "  "); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}
