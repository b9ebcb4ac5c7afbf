package nsthread

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Run calls fn on a fresh goroutine locked to its OS thread, after moving the
// thread into the network namespace /run/netns/name ("" leaves it in the
// caller's), and returns fn's error. Sockets fn creates belong to that
// namespace. The thread is never unlocked, so the Go runtime discards it when
// fn returns instead of running other goroutines in the namespace.
func Run(name string, fn func() error) error {
	var err error
	Locked(func() bool {
		err = enter(name, fn)
		return false
	})
	return err
}

// enter moves the locked calling thread into /run/netns/name and calls fn.
func enter(name string, fn func() error) error {
	if name != "" {
		f, err := os.Open(filepath.Join("/run/netns", name))
		if err != nil {
			return fmt.Errorf("nsthread: %w", err)
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			return fmt.Errorf("nsthread: setns %s: %w", name, err)
		}
	}
	return fn()
}

// Locked calls fn on a fresh goroutine locked to an OS thread that is not
// the process's main thread, and returns when fn has. The main thread must
// never change namespace: /proc/self/ns/net shows its namespace to every
// thread. fn returns whether it left the thread as it found it: then the
// thread is unlocked; otherwise it stays locked, and the Go runtime discards
// it when fn's goroutine ends.
func Locked(fn func() (restored bool)) {
	done := make(chan struct{})
	var work func()
	work = func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread: keep it locked here, so that the work
			// lands on another thread, and give it back unmoved.
			inner := make(chan struct{})
			go func() { work(); close(inner) }()
			<-inner
			runtime.UnlockOSThread()
			return
		}
		defer close(done)
		if fn() {
			runtime.UnlockOSThread()
		}
	}
	go work()
	<-done
}

// InNetns calls fn on a thread that is not the main one (see Locked), inside
// the network namespace of nsFD (an open /proc/PID/ns/net or /run/netns
// file), and moves the thread back before returning fn's error. With nsFD
// < 0, fn runs on such a thread in the namespace it is in. Sockets fn
// creates keep the namespace, and /proc/thread-self/net and /proc/sys/net
// show it to fn. A thread that cannot go back is never unlocked, so the Go
// runtime discards it instead of reusing it in the wrong namespace.
func InNetns(nsFD int, fn func() error) error {
	var err error
	Locked(func() bool {
		if nsFD < 0 {
			err = fn()
			return true
		}
		var restored bool
		restored, err = inNetns(nsFD, fn)
		return restored
	})
	return err
}

// InNetnsAt is InNetns for the namespace file at path; with path "" (the
// callers' "our own namespace") it calls fn in place, on the caller's thread.
func InNetnsAt(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("nsthread: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	defer unix.Close(fd)
	return InNetns(fd, fn)
}

// inNetns runs on a locked thread: it enters nsFD's namespace, calls fn and
// goes back. restored is false when the thread may still be in nsFD's.
func inNetns(nsFD int, fn func() error) (restored bool, err error) {
	const self = "/proc/thread-self/ns/net"
	orig, err := unix.Open(self, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true, fmt.Errorf("nsthread: %w", &os.PathError{Op: "open", Path: self, Err: err})
	}
	defer unix.Close(orig)
	// CLONE_NEWNET, never 0: systemd's RestrictNamespaces=net refuses setns(fd, 0).
	if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
		return true, fmt.Errorf("nsthread: enter netns: %w", os.NewSyscallError("setns", err))
	}
	err = fn()
	if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr != nil {
		return false, errors.Join(err, fmt.Errorf("nsthread: restore netns: %w", os.NewSyscallError("setns", rerr)))
	}
	return true, err
}

// Open calls open inside the namespace at path as InNetnsAt calls fn and
// returns what it opened (a socket keeps the namespace it was made in).
// When open succeeded but the thread could not go back, what it opened is
// closed with discard and InNetnsAt's error returned.
func Open[T any](path string, open func() (T, error), discard func(T) error) (T, error) {
	return openIn(func(fn func() error) error { return InNetnsAt(path, fn) }, open, discard)
}

// OpenFD is Open for the namespace of nsFD, as InNetns enters it.
func OpenFD[T any](nsFD int, open func() (T, error), discard func(T) error) (T, error) {
	return openIn(func(fn func() error) error { return InNetns(nsFD, fn) }, open, discard)
}

// openIn runs open through in, which calls it in a namespace and may fail
// afterwards, and discards what open made when in did.
func openIn[T any](in func(func() error) error, open func() (T, error), discard func(T) error) (T, error) {
	var v T
	opened := false
	err := in(func() error {
		var err error
		v, err = open()
		opened = err == nil
		return err
	})
	if err != nil {
		if opened {
			_ = discard(v) // opened, but the thread could not go back
		}
		var zero T
		return zero, err
	}
	return v, nil
}
