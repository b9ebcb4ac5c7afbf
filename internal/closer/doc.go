// Package closer closes a resource that a mutex guards, at most once.
package closer
