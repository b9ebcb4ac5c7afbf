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
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Exits locked: the thread may be in another namespace.
		if name != "" {
			f, err := os.Open(filepath.Join("/run/netns", name))
			if err != nil {
				errc <- fmt.Errorf("nsthread: %w", err)
				return
			}
			err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
			f.Close()
			if err != nil {
				errc <- fmt.Errorf("nsthread: setns %s: %w", name, err)
				return
			}
		}
		errc <- fn()
	}()
	return <-errc
}
