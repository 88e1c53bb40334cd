package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Opcodes of RFC 6455.
const (
	opContinuation = 0x0
	opText         = 0x1
	opPing         = 0x9
)

// wsFrame builds one masked client frame.
func wsFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	h := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		h = append(h, 0x80|byte(n))
	case n < 1<<16:
		h = append(h, 0x80|126)
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h = append(h, 0x80|127)
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	mask := [4]byte{0x11, 0x22, 0x33, 0x44}
	h = append(h, mask[:]...)
	for i, c := range payload {
		h = append(h, c^mask[i%4])
	}
	return h
}

// fragments splits msg into n frames of one text message; with empty, the
// first n-1 are empty and the last carries msg.
func fragments(msg []byte, n int, empty bool) [][]byte {
	var out [][]byte
	for i := 0; i < n; i++ {
		var part []byte
		switch {
		case empty && i < n-1:
		case empty:
			part = msg
		default:
			part = msg[i*len(msg)/n : (i+1)*len(msg)/n]
		}
		op := byte(opContinuation)
		if i == 0 {
			op = opText
		}
		out = append(out, wsFrame(i == n-1, op, part))
	}
	return out
}

// fragmented is fragments, joined into one stream.
func fragmented(msg []byte, n int, empty bool) []byte {
	return bytes.Join(fragments(msg, n, empty), nil)
}

// chunkConn is a net.Conn whose reads return a fixed stream in chunks of
// a given size.
type chunkConn struct {
	net.Conn
	r     io.Reader
	chunk int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.chunk)])
}

// TestFrameLimitConnParser feeds frame streams through frameLimitConn in
// reads of many sizes and checks where it stops: it passes every byte up to
// the header of the first frame over the limit (and of that header, what
// came in earlier reads), then fails.
func TestFrameLimitConnParser(t *testing.T) {
	const max = 4
	msg := []byte(`{"type":"join","room":"lobby"}`)
	big := bytes.Repeat([]byte("x"), 70000) // 8-byte length field
	mid := bytes.Repeat([]byte("y"), 300)   // 2-byte length field
	cases := []struct {
		name   string
		stream []byte
		pass   int // bytes that get through before the error; -1: all, no error
	}{
		{"one frame", wsFrame(true, opText, msg), -1},
		{"four fragments", fragmented(msg, 4, false), -1},
		{"four fragments with long lengths", append(append(wsFrame(false, opText, big), wsFrame(false, opContinuation, mid)...), append(wsFrame(false, opContinuation, nil), wsFrame(true, opContinuation, msg)...)...), -1},
		{"pings between fragments do not count", bytes.Join([][]byte{
			wsFrame(false, opText, msg[:5]), wsFrame(true, opPing, []byte("p")), wsFrame(false, opContinuation, msg[5:10]),
			wsFrame(true, opPing, nil), wsFrame(true, opPing, nil), wsFrame(false, opContinuation, msg[10:20]), wsFrame(true, opContinuation, msg[20:]),
		}, nil), -1},
		{"many messages of four fragments", bytes.Repeat(fragmented(msg, 4, false), 50), -1},
		{"five fragments", fragmented(msg, 5, false), len(bytes.Join(fragments(msg, 5, false)[:4], nil))},
		{"a whole message, then one of five empty fragments", append(wsFrame(true, opText, msg), fragmented(msg, 5, true)...), len(wsFrame(true, opText, msg)) + len(bytes.Join(fragments(msg, 5, true)[:4], nil))},
		{"a flood of empty continuations", append(wsFrame(false, opText, nil), bytes.Repeat(wsFrame(false, opContinuation, nil), 100000)...), 4 * len(wsFrame(false, opContinuation, nil))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.pass
			if want < 0 {
				want = len(tc.stream)
			}
			for _, chunk := range []int{1, 2, 3, 7, 64, 1024, 1 << 20} {
				c := &frameLimitConn{Conn: &chunkConn{r: bytes.NewReader(tc.stream), chunk: chunk}, max: max}
				got, err := io.ReadAll(c)
				if tc.pass < 0 && err != nil {
					t.Fatalf("reads of %d: %v after %d bytes; want the whole stream", chunk, err, len(got))
				}
				if tc.pass >= 0 && !errors.Is(err, errTooManyFrames) {
					t.Fatalf("reads of %d: error %v; want errTooManyFrames", chunk, err)
				}
				// Bytes of the offending header that came in earlier
				// reads have passed already: the reader holds an
				// unfinished header and then gets the error.
				if len(got) < want || len(got) > want+14-1 || !bytes.Equal(got, tc.stream[:len(got)]) {
					t.Fatalf("reads of %d: %d bytes got through; want %d, plus at most part of the next header", chunk, len(got), want)
				}
				if chunk >= len(tc.stream) && tc.pass >= 0 && len(got) != want {
					t.Fatalf("reads of %d: %d bytes got through; want exactly %d", chunk, len(got), want)
				}
			}
		})
	}
}

// One message may have at most --max-message-frames frames; more close the
// connection with 1009 after what is queued for it, whether the message
// ends or not (a flood of empty continuation frames). Pings between the
// fragments do not count, and the count starts again with each message.
func TestMaxMessageFrames(t *testing.T) {
	const max = 8
	s := newTestServer(t, func(c *Config) { c.MaxMsgFrames = max })
	join := []byte(`{"type":"join","room":"frames"}`)
	write := func(t *testing.T, c *wsClient, b []byte) {
		t.Helper()
		if _, err := c.Conn().NetConn().Write(b); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("at the limit", func(t *testing.T) {
		c := s.dial(t, "")
		write(t, c, fragmented(join, max, false))
		c.Expect("joined")
		write(t, c, fragmented(join, max, true))
		c.Expect("joined")
	})
	t.Run("pings between fragments", func(t *testing.T) {
		c := s.dial(t, "")
		var b []byte
		for i, f := range bytes.SplitAfter(fragmented(join, max, true), wsFrame(false, opContinuation, nil)) {
			b = append(b, f...)
			if i < 3 {
				b = append(b, wsFrame(true, opPing, []byte("hi"))...)
			}
		}
		write(t, c, b)
		c.Expect("joined")
	})
	t.Run("many messages at the limit in one write", func(t *testing.T) {
		c := s.dial(t, "")
		write(t, c, bytes.Repeat(fragmented(join, max, false), 20))
		for i := 0; i < 20; i++ {
			c.Expect("joined")
		}
	})
	t.Run("one frame over, after a reply is queued", func(t *testing.T) {
		c := s.dial(t, "")
		write(t, c, append(wsFrame(true, opText, join), fragmented(join, max+1, false)...))
		c.Expect("joined") // queued before the offending message: written first
		expectCloseWith(t, s, c, protocol.CloseMessageTooBig, "too_many_frames", observe.DisconnectTooManyFrames)
	})
	t.Run("a flood of empty continuation frames", func(t *testing.T) {
		c := s.dial(t, "")
		flood := append(wsFrame(false, opText, nil), bytes.Repeat(wsFrame(false, opContinuation, nil), 100000)...)
		go func() { _, _ = c.Conn().NetConn().Write(flood) }() // the server stops reading it
		expectCloseWith(t, s, c, protocol.CloseMessageTooBig, "too_many_frames", observe.DisconnectTooManyFrames)
	})
}

// The default frame allowance follows the size limit, so clients that
// fragment (gorilla/websocket does, at its 4 KiB write buffer) can always
// send a message up to --max-frame-bytes.
func TestMessageFramesDefault(t *testing.T) {
	for _, tc := range []struct{ set, frameBytes, want int }{
		{0, 32 << 10, 64}, {0, 1 << 20, 2048}, {0, 1024, 16}, {10, 32 << 10, 10},
	} {
		cfg := Config{MaxMsgFrames: tc.set, MaxFrameBytes: tc.frameBytes}
		if got := cfg.MessageFrames(); got != tc.want {
			t.Errorf("--max-message-frames %d, --max-frame-bytes %d: %d frames; want %d", tc.set, tc.frameBytes, got, tc.want)
		}
	}
	for _, frameBytes := range []int{32 << 10, 256 << 10} {
		s := newTestServer(t, func(c *Config) { c.MaxFrameBytes = frameBytes })
		c := s.dial(t, "") // a gorilla client: 4 KiB write buffer
		msg := []byte(`{"type":"join","room":"big"}`)
		c.SendRaw(websocket.TextMessage, append(msg, bytes.Repeat([]byte(" "), frameBytes-len(msg))...))
		c.Expect("joined")
	}
}
