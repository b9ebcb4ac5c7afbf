// Command goserver is a line-protocol server on Go's defaults (net.Listen,
// so every accepted connection has Go's default keepalive: 15 s idle, 15 s
// interval, 9 probes), for realserver's tests. A client line "ping" is
// answered "pong". Every connection to the unix socket -admin gets the
// server's own list of open client connections, one remote address a line.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
)

func main() {
	listen := flag.String("listen", ":9000", "TCP address to listen on")
	admin := flag.String("admin", "", "unix socket that lists the open client connections")
	flag.Parse()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	a, err := net.Listen("unix", *admin)
	if err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	go acceptEach(a, func(c net.Conn) {
		mu.Lock()
		var list []string
		for k := range conns {
			list = append(list, k.RemoteAddr().String())
		}
		mu.Unlock()
		sort.Strings(list)
		fmt.Fprint(c, strings.Join(list, "\n"))
		c.Close()
	})
	go acceptEach(l, func(c net.Conn) {
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		go serve(c, func() {
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	})
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	l.Close()
	a.Close()
}

// acceptEach calls fn with every connection l accepts, until l is closed.
func acceptEach(l net.Listener, fn func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		fn(c)
	}
}

// serve answers "ping" lines until the connection fails, then forgets it.
func serve(c net.Conn, forget func()) {
	defer forget()
	defer c.Close()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if sc.Text() != "ping" {
			return
		}
		if _, err := c.Write([]byte("pong\n")); err != nil {
			return
		}
	}
}
