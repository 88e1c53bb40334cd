package main

// End-to-end tests of the real binary against a hostile network: what one
// client or one address can make the gateway do (docs/security.md).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/internal/gatewaytest"
)

// sendRaw writes v as one text message, encoded as a browser's
// JSON.stringify does: without HTML escaping.
func sendRaw(conn *websocket.Conn, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	return conn.WriteMessage(websocket.TextMessage, bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// rawEnvelopes reads one message and returns its envelopes undecoded.
func rawEnvelopes(conn *websocket.Conn) ([][]byte, error) {
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	_, data, err := conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	return bytes.Split(data, []byte("\n")), nil
}

// TestReplayReachesAReader: a room's whole history (100 messages of the
// longest text, --history and --max-text-bytes at their defaults) reaches a
// client that joins with since: 0 and reads at a normal pace, whatever the
// texts are made of. Texts of '<' stay one byte per character on the wire;
// texts of control characters encode to six bytes each (about 2.4 MB of
// replay, over twice --queue-bytes) and are replayed all the same, and a
// client can send such a text within the default --max-frame-bytes.
func TestReplayReachesAReader(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := gatewaytest.Build(t)
	// Only the send rate is raised, so the test takes a second, not ten.
	p := gatewaytest.Start(t, bin, "--send-rate", "1000", "--send-burst", "1000")
	const msgs, textBytes = 100, 4096
	for i, tc := range []struct {
		name    string
		char    string
		maxSize int // the longest a message envelope may be on the wire
	}{
		{"angle brackets", "<", textBytes + 300},
		{"control characters", "\x01", 6*textBytes + 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			room := fmt.Sprintf("replay%d", i)
			text := strings.Repeat(tc.char, textBytes)
			sender, _, err := websocket.DefaultDialer.Dial("ws://"+p.ChatAddr+"/ws?room="+room, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer sender.Close()
			sent := make(chan error, 1)
			go func() {
				for j := 0; j < msgs; j++ {
					if err := sendRaw(sender, map[string]any{"type": "send", "room": room, "text": text, "ref": fmt.Sprint(j)}); err != nil {
						sent <- err
						return
					}
				}
				sent <- nil
			}()
			// The sender reads its own copies and acks meanwhile.
			for acks := 0; acks < msgs; {
				envs, err := rawEnvelopes(sender)
				if err != nil {
					t.Fatalf("sender after %d acks: %v", acks, err)
				}
				for _, raw := range envs {
					var e map[string]any
					if err := json.Unmarshal(raw, &e); err != nil {
						t.Fatalf("bad envelope %q: %v", raw, err)
					}
					switch e["type"] {
					case "ack":
						acks++
					case "error":
						t.Fatalf("sender got %s", raw)
					}
				}
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}

			joiner, _, err := websocket.DefaultDialer.Dial("ws://"+p.ChatAddr+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer joiner.Close()
			if err := sendRaw(joiner, map[string]any{"type": "join", "room": room, "since": 0}); err != nil {
				t.Fatal(err)
			}
			got, joined := 0, false
			for got < msgs {
				envs, err := rawEnvelopes(joiner)
				if err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						t.Fatalf("joiner closed with %d %q after %d of %d replayed messages", ce.Code, ce.Text, got, msgs)
					}
					t.Fatalf("joiner after %d of %d replayed messages: %v", got, msgs, err)
				}
				for _, raw := range envs {
					var e struct {
						Type      string `json:"type"`
						Text      string `json:"text"`
						Recovered *bool  `json:"recovered"`
					}
					if err := json.Unmarshal(raw, &e); err != nil {
						t.Fatalf("bad envelope %.80q: %v", raw, err)
					}
					switch e.Type {
					case "joined":
						if e.Recovered == nil || !*e.Recovered {
							t.Fatalf("joined %s; want recovered true (the ring holds the room's whole life)", raw)
						}
						joined = true
					case "message":
						if !joined {
							t.Fatal("a message before joined")
						}
						if e.Text != text {
							t.Fatalf("replayed text %.20q… (%d bytes); want %d of %q", e.Text, len(e.Text), textBytes, tc.char)
						}
						if len(raw) > tc.maxSize {
							t.Fatalf("a message envelope of %d bytes on the wire; want at most %d", len(raw), tc.maxSize)
						}
						got++
					}
				}
			}
		})
	}
}
