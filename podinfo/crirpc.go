package podinfo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// This file is the little of gRPC that the CRI client needs: unary calls,
// each an HTTP/2 POST (net/http's own HTTP/2, unencrypted, over the unix
// socket) whose body is one length-prefixed message, and whose status
// comes in the trailers (or, for a call that fails at once, in the
// headers). Errors read as grpc-go's did: "rpc error: code = … desc = …".

// maxCRIMessage bounds an answer: a node's listing is well below this; it
// bounds a broken runtime.
const maxCRIMessage = 16 << 20

// criService is the path prefix of the CRI's RuntimeService methods.
const criService = "/runtime.v1.RuntimeService/"

// rpcTransport returns an HTTP/2-only transport that dials the unix
// socket at path whatever the URL says.
func rpcTransport(path string) *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{
		Protocols: &p,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
}

// rpcError is a call's failure: its gRPC status code (codeNames) and
// description, and the error underneath when there is one (a dial
// error, the context's).
type rpcError struct {
	code int
	desc string
	err  error
}

func (e *rpcError) Error() string {
	return fmt.Sprintf("rpc error: code = %s desc = %s", codeName(e.code), e.desc)
}

func (e *rpcError) Unwrap() error { return e.err }

// gRPC status codes the client tells apart.
const (
	codeOK                = 0
	codeCanceled          = 1
	codeUnknown           = 2
	codeDeadlineExceeded  = 4
	codePermissionDenied  = 7
	codeResourceExhausted = 8
	codeUnimplemented     = 12
	codeInternal          = 13
	codeUnavailable       = 14
	codeUnauthenticated   = 16
)

// codeNames are the status codes' names, as grpc-go prints them.
var codeNames = [...]string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
	"OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

func codeName(c int) string {
	if c >= 0 && c < len(codeNames) {
		return codeNames[c]
	}
	return "Code(" + strconv.Itoa(c) + ")"
}

// httpCode maps an HTTP status that is not 200 to a gRPC code, as the
// gRPC spec does for answers from something that is not a gRPC server.
func httpCode(status int) int {
	switch status {
	case http.StatusBadRequest:
		return codeInternal
	case http.StatusUnauthorized:
		return codeUnauthenticated
	case http.StatusForbidden:
		return codePermissionDenied
	case http.StatusNotFound:
		return codeUnimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codeUnavailable
	}
	return codeUnknown
}

// ctxError is the error of a call that ctx ended.
func ctxError(ctx context.Context) error {
	err := ctx.Err()
	code := codeCanceled
	if errors.Is(err, context.DeadlineExceeded) {
		code = codeDeadlineExceeded
	}
	return &rpcError{code: code, desc: err.Error(), err: err}
}

// unaryCall calls method with the encoded request req and returns the
// encoded answer.
func unaryCall(ctx context.Context, c *http.Client, method string, req []byte) ([]byte, error) {
	body := make([]byte, 5+len(req)) // not compressed, length, message
	binary.BigEndian.PutUint32(body[1:5], uint32(len(req)))
	copy(body[5:], req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost"+criService+method, bytes.NewReader(body))
	if err != nil {
		return nil, &rpcError{code: codeInternal, desc: err.Error(), err: err}
	}
	hr.Header.Set("Content-Type", "application/grpc")
	hr.Header.Set("Te", "trailers")
	hr.Header.Set("User-Agent", "ghostd")
	if d, ok := ctx.Deadline(); ok {
		hr.Header.Set("Grpc-Timeout", timeoutHeader(time.Until(d)))
	}
	resp, err := c.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &rpcError{code: codeUnavailable, desc: fmt.Sprintf("connection error: desc = %q", "transport: Error while dialing: "+err.Error()), err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &rpcError{code: httpCode(resp.StatusCode), desc: "unexpected HTTP status code received from server: " +
			strconv.Itoa(resp.StatusCode) + " (" + http.StatusText(resp.StatusCode) + ")"}
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 5+maxCRIMessage+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx)
		}
		return nil, &rpcError{code: codeInternal, desc: err.Error(), err: err}
	}
	if err := statusOf(resp); err != nil {
		return nil, err
	}
	return unframe(raw)
}

// statusOf reads the call's status from the trailers, or from the headers
// of an answer that has no body ("Trailers-Only").
func statusOf(resp *http.Response) error {
	h := resp.Trailer
	if h.Get("Grpc-Status") == "" {
		h = resp.Header
	}
	s := h.Get("Grpc-Status")
	if s == "" {
		return &rpcError{code: codeInternal, desc: "server closed the stream without sending trailers"}
	}
	code, err := strconv.Atoi(s)
	if err != nil {
		return &rpcError{code: codeUnknown, desc: "malformed grpc-status: " + s}
	}
	if code == codeOK {
		return nil
	}
	msg, err := url.PathUnescape(h.Get("Grpc-Message"))
	if err != nil {
		msg = h.Get("Grpc-Message")
	}
	return &rpcError{code: code, desc: msg}
}

// unframe returns the one message of a unary answer's body.
func unframe(raw []byte) ([]byte, error) {
	if len(raw) < 5 {
		return nil, &rpcError{code: codeInternal, desc: "no response message"}
	}
	n := binary.BigEndian.Uint32(raw[1:5])
	switch {
	case raw[0] != 0:
		return nil, &rpcError{code: codeInternal, desc: "compressed response message; no compression was asked for"}
	case n > maxCRIMessage:
		return nil, &rpcError{code: codeResourceExhausted, desc: fmt.Sprintf("received message larger than max (%d vs. %d)", n, maxCRIMessage)}
	case uint64(len(raw)) != 5+uint64(n):
		return nil, &rpcError{code: codeInternal, desc: "response body is not one whole message"}
	}
	return raw[5:], nil
}

// timeoutHeader formats d as a grpc-timeout value: at most 8 digits and a
// unit.
func timeoutHeader(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range []struct {
		unit string
		d    time.Duration
	}{{"n", time.Nanosecond}, {"u", time.Microsecond}, {"m", time.Millisecond}, {"S", time.Second}, {"M", time.Minute}} {
		if v := (d + u.d - 1) / u.d; v < 1e8 {
			return strconv.FormatInt(int64(v), 10) + u.unit
		}
	}
	return strconv.FormatInt(int64(d/time.Hour)+1, 10) + "H"
}
