package testnet

import (
	"os/exec"
	"testing"
	"time"
)

// TestChildLinesAndStop: a child answers lines on stdout and ends when its
// stdin closes; one that ignores stdin is killed once the grace period is
// over.
func TestChildLinesAndStop(t *testing.T) {
	c := StartChild(t, exec.Command("cat"), 5*time.Second)
	if err := c.Send("hello"); err != nil {
		t.Fatal(err)
	}
	if line, err := c.ReadLine(); line != "hello" || err != nil {
		t.Fatalf("ReadLine = %q, %v; want hello", line, err)
	}
	c.Stop()
	if !c.Cmd.ProcessState.Success() {
		t.Errorf("cat after its stdin closed: %v, want a clean exit", c.Cmd.ProcessState)
	}
	c.Stop() // a second Stop (the cleanup's) does nothing

	s := StartChild(t, exec.Command("sleep", "30"), 100*time.Millisecond)
	start := time.Now()
	s.Stop()
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Stop took %v, want the child killed after its 100 ms grace", took)
	}
	if s.Cmd.ProcessState == nil || s.Cmd.ProcessState.Success() {
		t.Errorf("sleep after Stop: %v, want killed", s.Cmd.ProcessState)
	}
	if line, err := s.ReadLine(); err == nil {
		t.Errorf("ReadLine after Stop = %q, want an error", line)
	}
}
