package wsgate

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// readerConn is a gateConn whose reads come straight from a byte stream:
// gorilla reading it is the reference.
type readerConn struct {
	gateConn
	r io.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// FuzzGateMatchesGorilla feeds any byte stream, cut anywhere, through the
// Gate and compares what comes out (messages, pings, pongs, the first
// error) with gorilla reading the same stream directly: the Gate must
// never change what gorilla would have read, never panic, and never have
// gorilla read a byte it did not release.
func FuzzGateMatchesGorilla(f *testing.F) {
	f.Add(frame(fin(opText), []byte("hello"), false), uint8(3))
	f.Add(append(frame(opText, []byte("he"), false), append(frame(fin(opPing), []byte("p"), false), frame(fin(opContinuation), []byte("llo"), false)...)...), uint8(1))
	f.Add(append(frame(fin(opPong), nil, false), frame(fin(opClose), []byte{3, 232}, false)...), uint8(7))
	f.Add(frame(fin(opText), []byte("x"), true), uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		want := reference(t, stream)
		g := New(0, 0, false)
		ws, _ := serverOver(t, g)
		var got []string
		ws.SetPingHandler(func(s string) error { got = append(got, "ping "+s); return nil })
		ws.SetPongHandler(func(s string) error { got = append(got, "pong "+s); return nil })
		n := int(step%64) + 1
	feedLoop:
		for off := 0; off < len(stream); off += n {
			feed(g, stream[off:min(off+n, len(stream))])
			for {
				k, p, err := g.Next()
				if err != nil {
					t.Fatal(err)
				}
				switch k {
				case Need:
					continue feedLoop
				case Ping:
					got = append(got, "ping "+string(p))
				case Pong:
					got = append(got, "pong "+string(p))
				case Release:
					_, r, err := ws.NextReader()
					if err == nil {
						var data []byte
						data, err = io.ReadAll(r)
						if err == nil {
							got = append(got, "msg "+string(data))
							continue
						}
					}
					if err == ErrNotReleased || bytes.Contains([]byte(err.Error()), []byte(ErrNotReleased.Error())) {
						t.Fatalf("gorilla read past the released bytes")
					}
					got = append(got, "error")
					break feedLoop
				default:
					t.Fatalf("kind %d without limits", k)
				}
			}
		}
		// The reference ends with an error: the stream's own, or EOF when
		// it stops. The Gate ends with gorilla's error, or waiting.
		if len(got) == 0 || got[len(got)-1] != "error" {
			got = append(got, "error")
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("through the gate %q\ndirectly %q", got, want)
		}
	})
}

// reference is what gorilla reads from stream on its own.
func reference(t *testing.T, stream []byte) []string {
	rc := &readerConn{r: bytes.NewReader(stream)}
	ws := serverOverConn(t, rc)
	var out []string
	ws.SetPingHandler(func(s string) error { out = append(out, "ping "+s); return nil })
	ws.SetPongHandler(func(s string) error { out = append(out, "pong "+s); return nil })
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			return append(out, "error")
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return append(out, "error")
		}
		out = append(out, "msg "+string(data))
	}
}
