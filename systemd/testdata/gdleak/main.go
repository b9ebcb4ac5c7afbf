// Command gdleak runs inside the boot test's container: "gdleak hold" leaks
// a CLOSE_WAIT socket on 127.0.0.1:7001 and holds an idle ESTABLISHED pair
// on 127.0.0.1:7002; "gdleak get URL" prints a URL's body (minbase has no
// curl). It is built static and copied in.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gdleak hold | get URL")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "hold":
		err = hold()
	case "get":
		if len(os.Args) != 3 {
			err = fmt.Errorf("usage: gdleak get URL")
			break
		}
		err = get(os.Args[2])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gdleak:", err)
		os.Exit(1)
	}
}

// pair connects to addr and returns both ends. Keepalive is off on both (Go
// turns it on by default): a keepalive timer would keep ghostd from calling
// the connection idle.
func pair(addr string) (client, server net.Conn, err error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp4", addr)
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	d := net.Dialer{KeepAlive: -1}
	client, err = d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	server, err = ln.Accept()
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return client, server, nil
}

func hold() error {
	// CLOSE_WAIT: the client closes, the server side is never closed.
	client, leaked, err := pair("127.0.0.1:7001")
	if err != nil {
		return err
	}
	client.Close()
	// An idle but healthy connection: both ends stay open and silent.
	a, b, err := pair("127.0.0.1:7002")
	if err != nil {
		return err
	}
	fmt.Println("holding", leaked.LocalAddr(), "in CLOSE_WAIT and", a.LocalAddr(), "<->", b.LocalAddr(), "idle")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	leaked.Close()
	a.Close()
	b.Close()
	return nil
}

func get(url string) error {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
