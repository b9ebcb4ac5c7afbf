package testnet

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Child is a helper process a test started, usually the test binary itself
// in a helper role: it reads commands (or only EOF) on stdin and answers
// line by line on stdout; its stderr is the test's.
type Child struct {
	Cmd    *exec.Cmd
	Stdout *bufio.Reader
	stdin  io.WriteCloser
	grace  time.Duration
	once   sync.Once
}

// StartChild starts cmd with its stdin and stdout piped to the test and
// registers Stop as a cleanup. grace is how long Stop waits, after closing
// the child's stdin (its cue to end), before it kills the child.
func StartChild(t testing.TB, cmd *exec.Cmd, grace time.Duration) *Child {
	t.Helper()
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("testnet: child stdin: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("testnet: child stdout: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testnet: start %s: %v", cmd.Path, err)
	}
	c := &Child{Cmd: cmd, Stdout: bufio.NewReader(stdout), stdin: stdin, grace: grace}
	t.Cleanup(c.Stop)
	return c
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.Cmd.Process.Pid }

// Send writes one line to the child's stdin.
func (c *Child) Send(line string) error {
	_, err := io.WriteString(c.stdin, line+"\n")
	return err
}

// ReadLine returns the child's next line on stdout, without its newline.
func (c *Child) ReadLine() (string, error) {
	line, err := c.Stdout.ReadString('\n')
	if len(line) > 0 && line[len(line)-1] == '\n' {
		line = line[:len(line)-1]
	}
	return line, err
}

// Stop closes the child's stdin, waits up to the grace period for it to
// exit, then kills it (by its pid) and reaps it. It is safe to call twice.
func (c *Child) Stop() {
	c.once.Do(func() {
		c.stdin.Close()
		done := make(chan struct{})
		go func() { _ = c.Cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(c.grace):
			_ = c.Cmd.Process.Kill()
			<-done
		}
	})
}
