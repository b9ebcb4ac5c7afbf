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
// fn returns instead of running other goroutines in the namespace. The
// process's main thread never moves: /proc/self/ns/net shows its namespace to
// every thread.
func Run(name string, fn func() error) error {
	errc := make(chan error, 1)
	var work func()
	work = func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread: keep it locked here, so that the work
			// lands on another thread, and give it back unmoved.
			done := make(chan struct{})
			go func() { work(); close(done) }()
			<-done
			runtime.UnlockOSThread()
			return
		}
		errc <- enter(name, fn)
		// Exits locked: the thread may be in another namespace.
	}
	go work()
	return <-errc
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
