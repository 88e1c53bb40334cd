package wsgate

import (
	"bytes"
	"testing"

	"github.com/gorilla/websocket"
)

// The header plus the payload is exactly what gorilla/websocket writes for
// a server's text message, at every length boundary.
func TestTextHeaderMatchesGorilla(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 4095, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		ws, gc := serverOver(t, New(0, 0, false))
		if err := ws.WriteMessage(websocket.TextMessage, payload); err != nil {
			t.Fatal(err)
		}
		want := gc.out.Bytes()
		got := append(AppendTextHeader(nil, n), payload...)
		if !bytes.Equal(got, want) {
			t.Fatalf("n=%d: header % x, gorilla % x", n, got[:min(len(got), MaxServerHeader)], want[:min(len(want), MaxServerHeader)])
		}
		if l := TextFrameLen(n); l != len(want) {
			t.Fatalf("n=%d: TextFrameLen %d, gorilla wrote %d bytes", n, l, len(want))
		}
	}
}
