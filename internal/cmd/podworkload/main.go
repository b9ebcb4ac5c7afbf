// Command podworkload is the only binary in the pod images the end-to-end
// pod test builds (no registry is reachable): "pause" holds a pod sandbox,
// "connect ADDR" opens one TCP connection with keepalive off and holds it.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	switch {
	case len(args) == 1 && args[0] == "pause":
	case len(args) == 2 && args[0] == "connect":
		d := net.Dialer{KeepAlive: -1} // keepalive off: ghostd, not the kernel, must find the ghost
		c, err := d.Dial("tcp", args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "podworkload:", err)
			return 1
		}
		defer c.Close()
		fmt.Println("connected", c.LocalAddr(), "->", c.RemoteAddr())
	default:
		fmt.Fprintln(os.Stderr, "usage: podworkload pause | podworkload connect HOST:PORT")
		return 2
	}
	<-stop
	return 0
}
