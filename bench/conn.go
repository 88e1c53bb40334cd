package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Subprotocol is chatgate's WebSocket subprotocol.
const Subprotocol = "chatgate.v1"

// writeBufPool is shared by every connection: an idle connection holds no
// write buffer.
var writeBufPool = &sync.Pool{}

// dialOpts are what one dial needs beyond the URL.
type dialOpts struct {
	proto   string
	src     net.IP // local address; nil lets the kernel choose
	rcvBuf  int    // SO_RCVBUF before connect; 0 keeps the default
	mss     int    // TCP_MAXSEG before connect (announced in the SYN); 0 keeps the default
	timeout time.Duration
	creds   *credentials // Authorization header; nil sends none
	conn    int          // connection index, for a minted token
}

// dial opens one WebSocket. It returns the HTTP status of a refused
// handshake (0 when there was no HTTP answer).
func dial(ctx context.Context, rawURL string, o dialOpts) (*websocket.Conn, int, error) {
	nd := &net.Dialer{Timeout: o.timeout}
	if o.src != nil {
		nd.LocalAddr = &net.TCPAddr{IP: o.src}
	}
	if o.rcvBuf > 0 || o.mss > 0 {
		rcvBuf, mss := o.rcvBuf, o.mss
		nd.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if rcvBuf > 0 {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvBuf)
				}
				if mss > 0 && serr == nil {
					serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, mss)
				}
			})
			return errors.Join(err, serr)
		}
	}
	d := websocket.Dialer{
		NetDialContext:   nd.DialContext,
		HandshakeTimeout: o.timeout,
		ReadBufferSize:   4096,
		WriteBufferSize:  8192,
		WriteBufferPool:  writeBufPool,
	}
	if o.proto == ProtoChatgate {
		d.Subprotocols = []string{Subprotocol}
	}
	h, err := o.creds.header(o.conn)
	if err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	ws, resp, err := d.DialContext(ctx, rawURL, h)
	status, text := 0, ""
	if resp != nil {
		status = resp.StatusCode
		if resp.Body != nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			text, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
			resp.Body.Close()
		}
	}
	if err != nil {
		if status != 0 && status != http.StatusSwitchingProtocols {
			err = &refusedError{status: status, text: text, err: err}
		}
		return nil, status, err
	}
	return ws, status, nil
}

// refusedError is a handshake the server answered with an HTTP error.
type refusedError struct {
	status int
	text   string // the first line of the answer's body
	err    error
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %v", e.status, e.text, e.err)
}

func (e *refusedError) Unwrap() error { return e.err }

// refusal names a refused handshake for failures_by_reason: its status
// and what the server said ("429 too many connections from this
// address"); "" when the server did not refuse it with an HTTP answer.
func refusal(err error) string {
	var re *refusedError
	if !errors.As(err, &re) {
		return ""
	}
	if re.text == "" {
		return strconv.Itoa(re.status)
	}
	return strconv.Itoa(re.status) + " " + re.text
}

// errKind names an error for the errors-by-kind table.
func errKind(err error, status int) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case status != 0 && status != http.StatusSwitchingProtocols:
		return "http_" + strconv.Itoa(status)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken_pipe"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no_local_port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_open_files"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, websocket.ErrBadHandshake):
		return "bad_handshake"
	}
	return "other"
}

// closeInfo describes how a connection ended.
type closeInfo struct {
	code    int   // close code; 1006 when there was no close frame
	retryMs int64 // from a chatgate close reason, 0 if none
}

// classifyClose turns a read error into a closeInfo.
func classifyClose(err error) closeInfo {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		ci := closeInfo{code: ce.Code}
		if r := parseCloseReason(ce.Text); r != nil {
			ci.retryMs = r.RetryMs
		}
		return ci
	}
	return closeInfo{code: websocket.CloseAbnormalClosure}
}

type closeReason struct {
	R       string
	RetryMs int64
}

// parseCloseReason reads chatgate's {"r":...,"retry_ms":...} reason.
func parseCloseReason(text string) *closeReason {
	var r closeReason
	p := jsonScanner{b: []byte(text)}
	err := p.object(func(key []byte) error {
		switch string(key) {
		case "r":
			var s []byte
			err := p.str(&s)
			r.R = string(s)
			return err
		case "retry_ms":
			v, err := p.uint()
			r.RetryMs = int64(min(v, 1<<40))
			return err
		}
		return p.skip()
	})
	if err != nil || r.R == "" {
		return nil
	}
	return &r
}

// tally counts occurrences by name; safe for concurrent use.
type tally struct {
	mu sync.Mutex
	m  map[string]int64
}

func (t *tally) add(k string, n int64) {
	if k == "" || n == 0 {
		return
	}
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[string]int64)
	}
	t.m[k] += n
	t.mu.Unlock()
}

func (t *tally) snapshot() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int64, len(t.m))
	for k, v := range t.m {
		out[k] = v
	}
	return out
}

func (t *tally) total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for _, v := range t.m {
		n += v
	}
	return n
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Resource checks.

// fdReserve is what the bench keeps for itself beyond its connections:
// stdio, the report file, metrics scrapes, the runtime's epoll.
const fdReserve = 64

// checkFDs fails before the run when needed connections would run out of
// file descriptors.
func checkFDs(conns int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	need := uint64(conns) + fdReserve
	if need > lim.Cur {
		return fmt.Errorf("this run needs %d open files (%d connections + %d spare) but RLIMIT_NOFILE allows %d per process (hard limit %d): lower --conns, or raise the limit (ulimit -n) and run the server as a separate process",
			need, conns, fdReserve, lim.Cur, lim.Max)
	}
	return nil
}

// ephemeralPorts reads the kernel's local port range.
func ephemeralPorts() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && hi >= lo {
				return hi - lo + 1
			}
		}
	}
	return 28232 // Linux default 32768-60999
}

// checkPorts fails when one source address would need more ephemeral ports
// than the kernel has.
func checkPorts(conns, sources int) error {
	sources = max(sources, 1)
	perSource := (conns + sources - 1) / sources
	if ports := ephemeralPorts(); perSource > ports {
		return fmt.Errorf("%d connections from each source address, but only %d ephemeral ports exist per address: spread them with --source-ips 127.0.0.1-127.0.0.%d",
			perSource, ports, min(255, (conns+ports-1)/ports+1))
	}
	return nil
}
