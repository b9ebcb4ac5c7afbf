package nsthread

import (
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
