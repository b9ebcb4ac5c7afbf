package engine

import "github.com/ghostd/ghostd/exporter"

// Document returns the last scan with every session listed, as `ghostd
// scan` printed it before it streamed: a test helper (scan lists sessions
// with EachSessionAt, a batch at a time).
func (e *Engine) Document() exporter.Document {
	e.resolveOwners(true)
	e.mu.Lock()
	doc := e.frameLocked().Doc
	e.mu.Unlock()
	doc.Sessions = []exporter.Session{}
	e.EachSession(func(b []exporter.Session) bool {
		doc.Sessions = append(doc.Sessions, b...)
		return true
	})
	return doc
}
