// Package wstest is chatgate's one WebSocket test client: it dials the
// gateway, sends envelopes, and splits the server's coalesced messages
// into envelopes that a test reads in order (Next, Expect) or waits on
// (WaitFor, WaitEnv).
//
// A Client reads either only when the test asks (the default: a client
// that stops reading backs the gateway up, as slow-consumer tests need) or
// all the time in the background (Options.Background: it never becomes a
// slow consumer, for scenario tests that watch many clients at once). Both
// keep every envelope received, so Snapshot, WaitFor and the helpers over
// []Env work the same either way. Every wait has a deadline.
package wstest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// DefaultTimeout bounds every wait unless Options.Timeout says otherwise.
const DefaultTimeout = 10 * time.Second

// Options configure Dial.
type Options struct {
	Header http.Header
	// Dialer dials; nil means one offering the chatgate subprotocol.
	Dialer *websocket.Dialer
	// Background reads all the time instead of when the test asks.
	Background bool
	// Welcome waits for the welcome envelope (and consumes it: Next
	// returns what follows); Welcome() returns it.
	Welcome bool
	// Timeout bounds every wait (default DefaultTimeout).
	Timeout time.Duration
}

// Client is one test WebSocket connection.
type Client struct {
	t       testing.TB
	conn    *websocket.Conn
	timeout time.Duration
	bg      bool
	welcome Env

	writeMu sync.Mutex // gorilla allows one writer; tests may write from several goroutines

	mu      sync.Mutex
	envs    []Env
	next    int           // the next envelope Next returns
	changed chan struct{} // closed and replaced when envs grows or the connection ends
	err     error         // why reading ended; nil while it goes on
	code    int           // the close code, when the server sent a close frame
	done    chan struct{} // closed when the background reader has returned
}

// Dial opens a connection to url and fails the test if it cannot.
func Dial(t testing.TB, url string, o Options) *Client {
	t.Helper()
	c, resp, err := TryDial(t, url, o)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", url, err, status)
	}
	return c
}

// TryDial opens a connection to url; on failure it returns the HTTP
// response, if any, and the error.
func TryDial(t testing.TB, url string, o Options) (*Client, *http.Response, error) {
	t.Helper()
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	d := o.Dialer
	if d == nil {
		d = &websocket.Dialer{HandshakeTimeout: o.Timeout, Subprotocols: []string{protocol.Subprotocol}}
	}
	conn, resp, err := d.Dial(url, o.Header)
	if err != nil {
		return nil, resp, err
	}
	return New(t, conn, o), resp, nil
}

// New wraps a connection the test dialed itself.
func New(t testing.TB, conn *websocket.Conn, o Options) *Client {
	t.Helper()
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	c := &Client{t: t, conn: conn, timeout: o.Timeout, bg: o.Background, changed: make(chan struct{}), done: make(chan struct{})}
	if c.bg {
		go c.readLoop()
	} else {
		close(c.done)
	}
	t.Cleanup(c.Close)
	if o.Welcome {
		c.welcome = c.Expect("welcome")
	}
	return c
}

// Conn is the underlying connection, for what the Client does not do.
func (c *Client) Conn() *websocket.Conn { return c.conn }

// Welcome is the welcome envelope (with Options.Welcome).
func (c *Client) Welcome() Env { return c.welcome }

// UserID is the user id the welcome gave (with Options.Welcome).
func (c *Client) UserID() string {
	u, _ := c.welcome["user"].(map[string]any)
	id, _ := u["id"].(string)
	return id
}

// Close closes the connection and waits for the background reader.
func (c *Client) Close() {
	_ = c.conn.Close()
	<-c.done
}

// ---- sending ----

// TrySend writes v as one JSON text message.
func (c *Client) TrySend(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.TrySendRaw(websocket.TextMessage, b)
}

// TrySendRaw writes one message of type mt.
func (c *Client) TrySendRaw(mt int, b []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.conn.WriteMessage(mt, b)
}

// Send is TrySend that fails the test on error.
func (c *Client) Send(v any) {
	c.t.Helper()
	if err := c.TrySend(v); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// SendRaw is TrySendRaw that fails the test on error.
func (c *Client) SendRaw(mt int, b []byte) {
	c.t.Helper()
	if err := c.TrySendRaw(mt, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// ---- receiving ----

func (c *Client) readLoop() {
	defer close(c.done)
	for c.readOne(time.Time{}) == nil {
	}
}

// readOne reads one server message and records its envelopes; it records
// and returns the error that ends the connection. deadline zero means none.
func (c *Client) readOne(deadline time.Time) error {
	_ = c.conn.SetReadDeadline(deadline)
	mt, data, err := c.conn.ReadMessage()
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() && !c.bg {
		return err // a wait's deadline, not the end of the connection
	}
	var parsed []Env
	if err == nil && mt != websocket.TextMessage {
		err = errors.New("wstest: the server sent a non-text message")
	}
	if err == nil {
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			var e Env
			if jerr := json.Unmarshal(line, &e); jerr != nil {
				err = fmt.Errorf("wstest: the server sent invalid JSON %q: %v", line, jerr)
				break
			}
			parsed = append(parsed, e)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.envs = append(c.envs, parsed...)
	if err != nil && c.err == nil {
		c.err = err
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			c.code = ce.Code
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return err
}

// ErrTimeout is what TryNext returns when nothing arrives in time.
var ErrTimeout = errors.New("wstest: timed out")

// await calls cond (with c.mu held) over what has arrived until it holds,
// reading when the test drives the reads. It returns nil once cond holds,
// the error that ended the connection if it ended first, or ErrTimeout.
func (c *Client) await(cond func() bool) error {
	deadline := time.Now().Add(c.timeout)
	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		ok, err, ch := cond(), c.err, c.changed
		c.mu.Unlock()
		switch {
		case ok:
			return nil
		case err != nil:
			return err
		case !c.bg:
			if c.readOne(deadline) != nil && c.ended() == nil {
				return ErrTimeout
			}
			continue
		}
		select {
		case <-ch:
		case <-timer.C:
			return ErrTimeout
		}
	}
}

func (c *Client) ended() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// TryNext returns the next envelope in order; once every envelope has been
// returned, the error that ended the connection, or ErrTimeout when
// nothing arrives in time. It may be called from any goroutine (one at a
// time).
func (c *Client) TryNext() (Env, error) {
	var e Env
	err := c.await(func() bool {
		if c.next < len(c.envs) {
			e = c.envs[c.next]
			c.next++
			return true
		}
		return false
	})
	return e, err
}

// Next returns the next envelope in order; it fails the test if the
// connection ends first.
func (c *Client) Next() Env {
	c.t.Helper()
	e, err := c.TryNext()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return e
}

// Expect returns the next envelope of type typ, skipping presence frames
// (which arrive on their own schedule) and failing on anything else.
func (c *Client) Expect(typ string) Env {
	c.t.Helper()
	for {
		e := c.Next()
		switch e.Type() {
		case typ:
			return e
		case "presence":
			continue
		}
		c.t.Fatalf("got %v; want a %q envelope", e, typ)
	}
}

// ExpectClose reads until the connection closes and checks the close code;
// it returns the close reason text.
func (c *Client) ExpectClose(code int) string {
	c.t.Helper()
	for {
		_, err := c.TryNext()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			c.t.Fatalf("connection ended with %v; want close code %d", err, code)
		}
		if ce.Code != code {
			c.t.Fatalf("close code %d (%q); want %d", ce.Code, ce.Text, code)
		}
		return ce.Text
	}
}

// WaitFor waits until cond holds over everything received, and reports
// false if the connection ended first; it fails the test at the deadline.
func (c *Client) WaitFor(what string, cond func(envs []Env) bool) bool {
	c.t.Helper()
	err := c.await(func() bool { return cond(c.envs) })
	if err == ErrTimeout {
		c.t.Fatalf("timed out waiting for %s", what)
	}
	return err == nil
}

// WaitEnv returns the first envelope received that matches; it fails the
// test if the connection ends first.
func (c *Client) WaitEnv(what string, match func(Env) bool) Env {
	c.t.Helper()
	var found Env
	if !c.WaitFor(what, func(envs []Env) bool {
		i := slices.IndexFunc(envs, match)
		if i >= 0 {
			found = envs[i]
		}
		return i >= 0
	}) {
		c.t.Fatalf("connection closed (%v) while waiting for %s", c.ended(), what)
	}
	return found
}

// Snapshot returns everything received so far.
func (c *Client) Snapshot() []Env {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.envs)
}

// Count is how many envelopes received so far match.
func (c *Client) Count(match func(Env) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.envs {
		if match(e) {
			n++
		}
	}
	return n
}

// Closed reports whether the connection has ended, and the close code if
// the server sent a close frame (1006 if it ended without one).
func (c *Client) Closed() (bool, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return false, 0
	}
	if c.code == 0 {
		return true, websocket.CloseAbnormalClosure
	}
	return true, c.code
}

// WaitClosed waits for the connection to end and returns the close code
// (1006 if it ended without a close frame).
func (c *Client) WaitClosed() int {
	c.t.Helper()
	if c.await(func() bool { return false }) == ErrTimeout {
		c.t.Fatal("timed out waiting for the server to close the connection")
	}
	_, code := c.Closed()
	return code
}

// SmallBufferDialer returns a dialer whose sockets have a tiny receive
// buffer, so a client that stops reading backs the gateway up quickly.
func SmallBufferDialer(timeout time.Duration) *websocket.Dialer {
	nd := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	return &websocket.Dialer{NetDialContext: nd.DialContext, ReadBufferSize: 1024, HandshakeTimeout: timeout}
}
