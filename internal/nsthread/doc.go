// Package nsthread runs code on an OS thread inside another network namespace.
package nsthread
