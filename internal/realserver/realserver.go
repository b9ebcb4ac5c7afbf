package realserver

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// AskTimeout bounds one request and its answer.
const AskTimeout = 5 * time.Second

// Server is a real server running in a test namespace.
type Server struct {
	Name   string         // postgresql, redis, nginx, go
	V4, V6 netip.AddrPort // where clients connect
	proto  protocol
	view   func() ([]netip.AddrPort, error)
}

// newServer is the server called name, for clients of port on v4 and v6.
func newServer(name string, v4, v6 netip.Addr, port uint16, proto protocol) *Server {
	return &Server{Name: name, V4: netip.AddrPortFrom(v4, port), V6: netip.AddrPortFrom(v6, port), proto: proto}
}

// Addr returns the address clients of network ("tcp4" or "tcp6") connect to.
func (s *Server) Addr(network string) netip.AddrPort {
	if network == "tcp6" {
		return s.V6
	}
	return s.V4
}

// View returns the server's own view of its TCP clients: the remote address
// of every client connection it holds, as it reports them itself
// (pg_stat_activity, CLIENT LIST, stub_status with ss, the Go server's list).
func (s *Server) View() ([]netip.AddrPort, error) { return s.view() }

// Client is one client connection speaking the server's protocol.
type Client struct {
	Conn  net.Conn
	br    *bufio.Reader
	proto protocol
}

// Ask sends one request (SELECT 1, PING, GET /, ping) and reads its answer.
func (c *Client) Ask() error {
	if err := c.Conn.SetDeadline(time.Now().Add(AskTimeout)); err != nil {
		return err
	}
	defer c.Conn.SetDeadline(time.Time{})
	return c.proto.ask(c)
}

// NewClient wraps an open connection and runs the protocol's handshake
// (PostgreSQL's startup; nothing for the others).
func (s *Server) NewClient(conn net.Conn) (*Client, error) {
	c := &Client{Conn: conn, br: bufio.NewReader(conn), proto: s.proto}
	if err := conn.SetDeadline(time.Now().Add(AskTimeout)); err != nil {
		return nil, err
	}
	defer conn.SetDeadline(time.Time{})
	if err := s.proto.handshake(c); err != nil {
		return nil, fmt.Errorf("realserver: %s handshake: %w", s.Name, err)
	}
	return c, nil
}

type protocol interface {
	handshake(c *Client) error
	ask(c *Client) error
}

// pgProto is PostgreSQL's frontend/backend protocol 3.0, simple query only,
// with trust authentication.
type pgProto struct{}

func (pgProto) handshake(c *Client) error {
	var body []byte
	body = binary.BigEndian.AppendUint32(body, 3<<16) // protocol 3.0
	for _, kv := range []string{"user", "postgres", "database", "postgres", "application_name", "ghostd-e2e"} {
		body = append(append(body, kv...), 0)
	}
	body = append(body, 0)
	msg := binary.BigEndian.AppendUint32(nil, uint32(4+len(body)))
	if _, err := c.Conn.Write(append(msg, body...)); err != nil {
		return err
	}
	_, err := pgUntilReady(c.br)
	return err
}

func (pgProto) ask(c *Client) error {
	q := "SELECT 1\x00"
	msg := append([]byte{'Q'}, binary.BigEndian.AppendUint32(nil, uint32(4+len(q)))...)
	if _, err := c.Conn.Write(append(msg, q...)); err != nil {
		return err
	}
	rows, err := pgUntilReady(c.br)
	if err == nil && rows != 1 {
		err = fmt.Errorf("SELECT 1 returned %d rows", rows)
	}
	return err
}

// pgMaxMessage bounds a backend message; ours are tiny.
const pgMaxMessage = 1 << 20

// pgUntilReady reads backend messages up to ReadyForQuery and returns the
// number of DataRows and the first ErrorResponse as an error.
func pgUntilReady(br *bufio.Reader) (rows int, err error) {
	var first error
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return rows, err
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n < 4 || n > pgMaxMessage {
			return rows, fmt.Errorf("postgresql: message %q of length %d", hdr[0], n)
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(br, body); err != nil {
			return rows, err
		}
		switch hdr[0] {
		case 'R':
			if len(body) < 4 || binary.BigEndian.Uint32(body) != 0 {
				return rows, fmt.Errorf("postgresql: authentication %x requested, only trust is supported", body)
			}
		case 'E':
			if first == nil {
				first = fmt.Errorf("postgresql: %s", bytes.ReplaceAll(bytes.TrimRight(body, "\x00"), []byte{0}, []byte{' '}))
			}
		case 'D':
			rows++
		case 'Z':
			return rows, first
		}
	}
}

// httpProto is HTTP/1.1 with keep-alive: GET / must answer 200 "ok\n".
type httpProto struct{}

func (httpProto) handshake(*Client) error { return nil }

func (httpProto) ask(c *Client) error {
	if _, err := c.Conn.Write([]byte("GET / HTTP/1.1\r\nHost: ghostd-e2e\r\n\r\n")); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" || resp.Close {
		return fmt.Errorf("http: GET / answered %s %q (close %t)", resp.Status, body, resp.Close)
	}
	return nil
}

// lineProto is a one-line request answered by one expected line: Redis's
// RESP (PING, +PONG) and the Go server's ("ping", "pong").
type lineProto struct {
	name      string // for errors: "redis", "go server"
	req, resp string // each with its line ending
}

// respProto is Redis's RESP: PING, +PONG.
var respProto = lineProto{name: "redis", req: "PING\r\n", resp: "+PONG\r\n"}

// goProto is the Go server's: "ping\n", "pong\n".
var goProto = lineProto{name: "go server", req: "ping\n", resp: "pong\n"}

func (lineProto) handshake(*Client) error { return nil }

func (p lineProto) ask(c *Client) error {
	if _, err := c.Conn.Write([]byte(p.req)); err != nil {
		return err
	}
	line, err := c.br.ReadString('\n')
	if err != nil {
		return err
	}
	if line != p.resp {
		return fmt.Errorf("%s: %s answered %q", p.name, strings.TrimSpace(p.req), line)
	}
	return nil
}

// parseAddrPort parses ADDR:PORT or [ADDR]:PORT, unmapping v4-mapped addresses.
func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		// Redis writes IPv6 peers without brackets: 2001:db8::1:4242.
		i := strings.LastIndexByte(s, ':')
		if i < 0 {
			return netip.AddrPort{}, err
		}
		a, aerr := netip.ParseAddr(strings.Trim(s[:i], "[]"))
		p, perr := strconv.ParseUint(s[i+1:], 10, 16)
		if aerr != nil || perr != nil {
			return netip.AddrPort{}, err
		}
		ap = netip.AddrPortFrom(a, uint16(p))
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// parseRedisClients returns the TCP peers in a CLIENT LIST reply (unix
// socket clients are left out).
func parseRedisClients(out string) ([]netip.AddrPort, error) {
	var peers []netip.AddrPort
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		for _, f := range strings.Fields(line) {
			v, ok := strings.CutPrefix(f, "addr=")
			if !ok {
				continue
			}
			if strings.HasPrefix(v, "/") {
				break // a unix socket client: our own redis-cli
			}
			ap, err := parseAddrPort(v)
			if err != nil {
				return nil, fmt.Errorf("realserver: CLIENT LIST: %w", err)
			}
			peers = append(peers, ap)
		}
	}
	return peers, nil
}

// errMissing is wrapped when a server's binary is not installed.
var errMissing = errors.New("realserver: not installed")

// Ports the servers listen on in their namespace.
const (
	PostgreSQLPort = 5432
	RedisPort      = 6379
	NginxPort      = 8080
	// NginxUpstreamPort is nginx's own backend, on 127.0.0.1, which its
	// upstream keepalive pool connects to.
	NginxUpstreamPort = 8081
	GoPort            = 9000
)

// Socket is an ESTABLISHED TCP socket in a namespace and one process holding it.
type Socket struct {
	Local, Remote netip.AddrPort // v4-mapped addresses unmapped
	Inode         uint64
	Comm          string
	PID, FD       int // 0 when no process holds it
}
