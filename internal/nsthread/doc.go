// Package nsthread runs code on an OS thread inside a named network namespace.
package nsthread
