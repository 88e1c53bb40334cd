package wsgate

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// frame builds one client frame (masked unless unmasked is set).
func frame(b0 byte, payload []byte, unmasked bool) []byte {
	n := len(payload)
	var h []byte
	switch {
	case n < 126:
		h = []byte{b0, byte(n)}
	case n < 1<<16:
		h = []byte{b0, 126, 0, 0}
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h = []byte{b0, 127, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	if unmasked {
		return append(h, payload...)
	}
	h[1] |= 0x80
	key := []byte{0x12, 0x34, 0x56, 0x78}
	h = append(h, key...)
	start := len(h)
	h = append(h, payload...)
	unmask(h[start:], key)
	return h
}

func fin(op byte) byte { return 0x80 | op }

// gateConn is the net.Conn gorilla reads through: the Gate, and a buffer
// for what it writes.
type gateConn struct {
	net.Conn // nil: only the methods below are used
	g        *Gate
	out      bytes.Buffer
}

func (c *gateConn) Read(p []byte) (int, error)       { return c.g.Read(p) }
func (c *gateConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *gateConn) Close() error                     { return nil }
func (c *gateConn) SetDeadline(time.Time) error      { return nil }
func (c *gateConn) SetReadDeadline(time.Time) error  { return nil }
func (c *gateConn) SetWriteDeadline(time.Time) error { return nil }
func (c *gateConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *gateConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

type hijackRecorder struct {
	*httptest.ResponseRecorder
	conn net.Conn
}

func (h hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReader(bytes.NewReader(nil)), bufio.NewWriter(h.conn)), nil
}

// serverOver makes a gorilla server connection that reads through g.
func serverOver(t *testing.T, g *Gate) (*websocket.Conn, *gateConn) {
	t.Helper()
	gc := &gateConn{g: g}
	return serverOverConn(t, gc), gc
}

// serverOverConn makes a gorilla server connection over c.
func serverOverConn(t *testing.T, c interface {
	net.Conn
	reset()
}) *websocket.Conn {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	up := websocket.Upgrader{ReadBufferSize: 128, WriteBufferPool: nilPool{}}
	ws, err := up.Upgrade(hijackRecorder{httptest.NewRecorder(), c}, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.reset() // the 101 response
	return ws
}

func (c *gateConn) reset() { c.out.Reset() }

type nilPool struct{}

func (nilPool) Get() any { return nil }
func (nilPool) Put(any)  {}

// feed appends b to g.
func feed(g *Gate, b []byte) {
	for len(b) > 0 {
		sp := g.Space(1)
		n := copy(sp, b)
		g.Commit(n)
		b = b[n:]
	}
}

// event is what a drive loop observed.
type event struct {
	kind Kind
	data string
	err  error
}

// drain runs Next until Need, reading released messages through ws.
func drain(t *testing.T, g *Gate, ws *websocket.Conn) []event {
	t.Helper()
	var evs []event
	for {
		k, p, err := g.Next()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		switch k {
		case Need:
			return evs
		case Release:
			_, r, err := ws.NextReader()
			if err != nil {
				return append(evs, event{kind: Release, err: err})
			}
			data, err := io.ReadAll(r)
			if err != nil {
				return append(evs, event{kind: Release, err: err})
			}
			evs = append(evs, event{kind: Release, data: string(data)})
		case Ping:
			evs = append(evs, event{kind: Ping, data: string(p)})
		case Pong:
			evs = append(evs, event{kind: Pong})
		default:
			return append(evs, event{kind: k})
		}
	}
}

// TestRandomStreams sends random messages, fragmented at random with pings
// and pongs in between and inside, arriving in random pieces: every
// message comes out whole and in order, every ping is reported with its
// payload where it stood in the stream (gorilla never sees one), and
// nothing is left held.
func TestRandomStreams(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		g := New(1<<20, 64, false)
		ws, _ := serverOver(t, g)
		var inner []string
		ws.SetPingHandler(func(s string) error { inner = append(inner, s); return nil })
		var stream []byte
		var want []event
		for i := range 200 {
			if rng.IntN(4) == 0 {
				p := []byte{byte(i), 'p'}
				stream = append(stream, frame(fin(opPing), p, false)...)
				want = append(want, event{kind: Ping, data: string(p)})
			}
			if rng.IntN(8) == 0 {
				stream = append(stream, frame(fin(opPong), nil, false)...)
				want = append(want, event{kind: Pong})
			}
			size := rng.IntN(3000)
			if rng.IntN(20) == 0 {
				size = 70000
			}
			msg := bytes.Repeat([]byte{byte('a' + i%26)}, size)
			nfrag := 1 + rng.IntN(4)
			off := 0
			for f := range nfrag {
				end := off + (size-off)/(nfrag-f)
				if f == nfrag-1 {
					end = size
				}
				var b0 byte = opContinuation
				if f == 0 {
					b0 = opText
				}
				if f == nfrag-1 {
					b0 |= 0x80
				}
				stream = append(stream, frame(b0, msg[off:end], false)...)
				off = end
				if f < nfrag-1 && rng.IntN(3) == 0 {
					p := []byte{'i', byte(i)}
					stream = append(stream, frame(fin(opPing), p, false)...)
					want = append(want, event{kind: Ping, data: string(p)})
				}
			}
			want = append(want, event{kind: Release, data: string(msg)})
		}
		var got []event
		for len(stream) > 0 {
			n := min(len(stream), 1+rng.IntN(9000))
			if rng.IntN(10) == 0 {
				n = 1
			}
			feed(g, stream[:n])
			stream = stream[n:]
			got = append(got, drain(t, g, ws)...)
		}
		for i := range min(len(got), len(want)) {
			if got[i].kind != want[i].kind || got[i].data != want[i].data || got[i].err != nil {
				t.Fatalf("seed %d: event %d = {%d %d bytes %v}, want {%d %d bytes}", seed, i, got[i].kind, len(got[i].data), got[i].err, want[i].kind, len(want[i].data))
			}
		}
		if len(got) != len(want) {
			t.Fatalf("seed %d: %d events, want %d", seed, len(got), len(want))
		}
		if len(inner) != 0 {
			t.Fatalf("seed %d: gorilla saw %d pings", seed, len(inner))
		}
		if g.Buffered() != 0 || g.buf != nil {
			t.Fatalf("seed %d: %d bytes held after the stream", seed, g.Buffered())
		}
	}
}

// A close frame between messages is released: gorilla answers it and
// reports the close.
func TestCloseReleased(t *testing.T) {
	g := New(1<<20, 64, false)
	ws, gc := serverOver(t, g)
	feed(g, frame(fin(opText), []byte("last"), false))
	feed(g, frame(fin(opClose), websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), false))
	evs := drain(t, g, ws)
	if len(evs) != 2 || evs[0].data != "last" {
		t.Fatalf("events %+v", evs)
	}
	var ce *websocket.CloseError
	if !errors.As(evs[1].err, &ce) || ce.Code != websocket.CloseGoingAway || ce.Text != "bye" {
		t.Fatalf("close: %v", evs[1].err)
	}
	if !bytes.HasPrefix(gc.out.Bytes(), []byte{0x88}) {
		t.Fatalf("gorilla did not answer the close: % x", gc.out.Bytes())
	}
}

// Malformed frames are released to gorilla, which reports the protocol
// error and closes with 1002; nothing blocks.
func TestMalformedReleased(t *testing.T) {
	start := frame(opText, []byte("a"), false)
	cases := []struct {
		name   string
		stream []byte
	}{
		{"unmasked", frame(fin(opText), []byte("x"), true)},
		{"rsv1", frame(0x80|0x40|opText, []byte("x"), false)},
		{"bad opcode", frame(fin(0x3), []byte("x"), false)},
		{"continuation first", frame(fin(opContinuation), []byte("x"), false)},
		{"text inside a message", append(append([]byte{}, start...), frame(fin(opText), []byte("x"), false)...)},
		{"control too long", frame(fin(opPing), make([]byte, 126), false)},
		{"control fragmented", frame(opPing, []byte("x"), false)},
		{"63-bit length", []byte{fin(opText), 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := New(1<<20, 64, false)
			ws, gc := serverOver(t, g)
			feed(g, tc.stream)
			evs := drain(t, g, ws)
			if len(evs) != 1 || evs[0].err == nil {
				t.Fatalf("events %+v", evs)
			}
			if tc.name == "63-bit length" {
				return // gorilla reports it as a read limit, without a close frame
			}
			if o := gc.out.Bytes(); len(o) < 4 || o[0] != 0x88 || binary.BigEndian.Uint16(o[2:4]) != websocket.CloseProtocolError {
				t.Fatalf("gorilla wrote % x; want a 1002 close", o)
			}
		})
	}
}

// The limits apply from the headers, before the payload arrives.
func TestLimits(t *testing.T) {
	t.Run("too big", func(t *testing.T) {
		g := New(1000, 64, false)
		f := frame(fin(opText), make([]byte, 1001), false)
		feed(g, f[:8]) // the header only
		if k, _, _ := g.Next(); k != TooBig {
			t.Fatalf("kind %d", k)
		}
	})
	t.Run("too big across fragments", func(t *testing.T) {
		g := New(1000, 64, false)
		feed(g, frame(opText, make([]byte, 600), false))
		feed(g, frame(fin(opContinuation), make([]byte, 401), false)[:8])
		if k, _, _ := g.Next(); k != TooBig {
			t.Fatalf("kind %d", k)
		}
	})
	t.Run("too many frames", func(t *testing.T) {
		g := New(1000, 3, false)
		feed(g, frame(opText, nil, false))
		feed(g, frame(opContinuation, nil, false))
		feed(g, frame(fin(opPing), nil, false)) // control frames do not count
		feed(g, frame(opContinuation, nil, false))
		if k, _, _ := g.Next(); k != Ping {
			t.Fatalf("kind %d; want the ping", k)
		}
		if k, _, _ := g.Next(); k != Need {
			t.Fatalf("kind %d after 3 frames", k)
		}
		feed(g, frame(fin(opContinuation), nil, false))
		if k, _, _ := g.Next(); k != TooManyFrames {
			t.Fatalf("kind %d", k)
		}
	})
	t.Run("at the limits", func(t *testing.T) {
		g := New(1000, 2, false)
		ws, _ := serverOver(t, g)
		feed(g, frame(opText, make([]byte, 500), false))
		feed(g, frame(fin(opContinuation), make([]byte, 500), false))
		if evs := drain(t, g, ws); len(evs) != 1 || len(evs[0].data) != 1000 {
			t.Fatalf("events %+v", evs)
		}
	})
}

// Reading past a message fails instead of blocking, and Next refuses to go
// on while a released message is unread.
func TestMisuse(t *testing.T) {
	g := New(1000, 8, false)
	if _, err := g.Read(make([]byte, 8)); !errors.Is(err, ErrNotReleased) {
		t.Fatalf("Read: %v", err)
	}
	feed(g, frame(fin(opText), []byte("hi"), false))
	if k, _, err := g.Next(); k != Release || err != nil {
		t.Fatalf("Next: %d %v", k, err)
	}
	if _, _, err := g.Next(); !errors.Is(err, ErrUnread) {
		t.Fatalf("second Next: %v", err)
	}
}

// An idle gate holds no buffer; reading reuses pooled ones.
func TestIdleHoldsNothing(t *testing.T) {
	g := New(1<<20, 64, false)
	ws, _ := serverOver(t, g)
	feed(g, frame(fin(opText), []byte("x"), false))
	drain(t, g, ws)
	if g.buf != nil {
		t.Fatal("an idle gate keeps its buffer")
	}
	pong := frame(fin(opPong), nil, false)
	allocs := testing.AllocsPerRun(100, func() {
		sp := g.Space(64)
		n := copy(sp, pong)
		g.Commit(n)
		if k, _, _ := g.Next(); k != Pong {
			t.Fatalf("kind %d", k)
		}
		if k, _, _ := g.Next(); k != Need {
			t.Fatalf("kind %d", k)
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per pong", allocs)
	}
	// A read that finds nothing leaves nothing held either.
	g.Space(64)
	g.Trim()
	if g.buf != nil {
		t.Fatal("an empty read keeps the buffer")
	}
}
