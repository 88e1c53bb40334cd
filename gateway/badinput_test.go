package gateway

// Integration tests for every bad client input: the error envelopes that
// leave the connection open, and the close codes that end it.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// expectErrorEnv reads the next envelope (skipping presence), which must be
// an error envelope with code and a non-empty message; ref "" means the
// envelope must carry no ref.
func expectErrorEnv(t testing.TB, c *wsClient, code protocol.ErrorCode, ref string) map[string]any {
	t.Helper()
	env := c.Expect("error")
	if env["code"] != string(code) {
		t.Fatalf("error envelope %v; want code %q", env, code)
	}
	if msg, _ := env["message"].(string); msg == "" {
		t.Fatalf("error envelope %v has no message", env)
	}
	got, has := env["ref"]
	switch {
	case ref == "" && has:
		t.Fatalf("error envelope %v carries ref %v; want none", env, got)
	case ref != "" && got != ref:
		t.Fatalf("error envelope %v: ref %v; want %q", env, got, ref)
	}
	return env
}

// awaitReply returns the next ack or error envelope, skipping the chat and
// presence traffic a member of a room also receives.
func awaitReply(t testing.TB, c *wsClient) map[string]any {
	t.Helper()
	for {
		env := c.Next()
		switch env["type"] {
		case "ack", "error":
			return env
		case "message", "presence":
			continue
		}
		t.Fatalf("got %v; want an ack or error", env)
	}
}

// sendAndAck sends text to room with ref and checks it is acked.
func sendAndAck(t testing.TB, c *wsClient, room, text, ref string) map[string]any {
	t.Helper()
	c.Send(map[string]any{"type": "send", "room": room, "text": text, "ref": ref})
	env := awaitReply(t, c)
	if env["type"] != "ack" || env["ref"] != ref || env["room"] != room {
		t.Fatalf("got %v; want an ack for %q in %q", env, ref, room)
	}
	return env
}

// assertUsable proves a connection still works after an error envelope:
// the very next envelope answers a fresh join, and a send to it is acked.
func assertUsable(t testing.TB, c *wsClient) {
	t.Helper()
	room := fmt.Sprintf("usable-%d", time.Now().UnixNano())
	if env := c.Join(room); env["room"] != room {
		t.Fatalf("joined %v; want room %q", env, room)
	}
	sendAndAck(t, c, room, "still here", "usable")
}

// expectCloseWith reads until the server closes with code, and checks the
// reason is our compact JSON (≤ 123 bytes) with r, and that the observer
// saw the disconnect reason.
func expectCloseWith(t testing.TB, s *testServer, c *wsClient, code int, r string, reason observe.DisconnectReason) protocol.CloseReason {
	t.Helper()
	text := c.ExpectClose(code)
	if len(text) > protocol.MaxCloseReasonBytes {
		t.Fatalf("close reason is %d bytes; want ≤ %d", len(text), protocol.MaxCloseReasonBytes)
	}
	why, ok := protocol.ParseCloseReason(text)
	if !ok {
		t.Fatalf("close reason %q is not a JSON close reason", text)
	}
	if why.R != r {
		t.Fatalf("close reason %q; want r=%q", text, r)
	}
	s.obs.waitFor(t, "disconnect reason "+string(reason), func() bool { return s.obs.disconnects[reason] > 0 })
	return why
}

func TestBadInputErrorEnvelopes(t *testing.T) {
	s := newTestServer(t, nil) // max_text_bytes 4096, max_frame_bytes 16 KiB
	joinLobby := func(t *testing.T, c *wsClient) { c.Join("lobby") }
	joinThenLeave := func(t *testing.T, c *wsClient) {
		c.Join("gone")
		c.Send(map[string]any{"type": "leave", "room": "gone"})
		c.Expect("left")
	}
	long := func(b byte, n int) string { return strings.Repeat(string(b), n) }

	cases := []struct {
		name  string
		setup func(*testing.T, *wsClient)
		frame string
		code  protocol.ErrorCode
		ref   string
	}{
		// Malformed JSON: the ref is echoed whenever it can be recovered.
		{name: "truncated JSON keeps ref", frame: `{"type":"send","room":"lobby","text":"hi","ref":"r1"`, code: protocol.CodeBadRequest, ref: "r1"},
		{name: "truncated inside the ref", frame: `{"type":"send","room":"lobby","ref":"r1`, code: protocol.CodeBadRequest},
		{name: "syntax error after ref keeps ref", frame: `{"ref":"r-se","type":"join","room":lobby}`, code: protocol.CodeBadRequest, ref: "r-se"},
		{name: "trailing garbage keeps ref", frame: `{"type":"join","room":"lobby","ref":"r-tg"} x`, code: protocol.CodeBadRequest, ref: "r-tg"},
		{name: "trailing garbage", frame: `{"type":"join","room":"lobby"} x`, code: protocol.CodeBadRequest},
		{name: "two objects", frame: `{"type":"join","room":"a"}{"type":"join","room":"b"}`, code: protocol.CodeBadRequest},
		{name: "not JSON at all", frame: `hello`, code: protocol.CodeBadRequest},
		{name: "empty frame", frame: ``, code: protocol.CodeBadRequest},
		{name: "JSON array", frame: `["join","lobby"]`, code: protocol.CodeBadRequest},
		{name: "JSON string", frame: `"join"`, code: protocol.CodeBadRequest},
		{name: "JSON null", frame: `null`, code: protocol.CodeBadRequest},
		{name: "text not a string keeps ref", frame: `{"type":"send","room":"lobby","text":42,"ref":"r-text"}`, code: protocol.CodeBadRequest, ref: "r-text"},
		{name: "type not a string keeps ref", frame: `{"type":7,"room":"lobby","ref":"r-type"}`, code: protocol.CodeBadRequest, ref: "r-type"},
		{name: "negative since keeps ref", frame: `{"type":"join","room":"lobby","since":-1,"ref":"r-since"}`, code: protocol.CodeBadRequest, ref: "r-since"},
		{name: "since a string keeps ref", frame: `{"type":"join","room":"lobby","since":"3","ref":"r-since2"}`, code: protocol.CodeBadRequest, ref: "r-since2"},
		{name: "ref not a string", frame: `{"type":"join","room":"lobby","ref":5}`, code: protocol.CodeBadRequest},
		{name: "ref over 64 bytes is not echoed", frame: `{"type":"join","room":"lobby","ref":"` + long('r', 65) + `"}`, code: protocol.CodeBadRequest},

		// Missing and unknown types.
		{name: "missing type", frame: `{"room":"lobby","ref":"r-mt"}`, code: protocol.CodeBadRequest, ref: "r-mt"},
		{name: "empty type", frame: `{"type":"","room":"lobby","ref":"r-et"}`, code: protocol.CodeBadRequest, ref: "r-et"},
		{name: "unknown type", frame: `{"type":"shout","room":"lobby","ref":"r-ut"}`, code: protocol.CodeUnknownType, ref: "r-ut"},
		{name: "type is case sensitive", frame: `{"type":"JOIN","room":"lobby"}`, code: protocol.CodeUnknownType},
		{name: "long unknown type", frame: `{"type":"` + long('t', 500) + `","ref":"r-lt"}`, code: protocol.CodeUnknownType, ref: "r-lt"},

		// Field misuse.
		{name: "since on send", setup: joinLobby, frame: `{"type":"send","room":"lobby","text":"hi","since":3,"ref":"r-ss"}`, code: protocol.CodeBadRequest, ref: "r-ss"},
		{name: "since on leave", setup: joinLobby, frame: `{"type":"leave","room":"lobby","since":3,"ref":"r-sl"}`, code: protocol.CodeBadRequest, ref: "r-sl"},
		{name: "empty text", setup: joinLobby, frame: `{"type":"send","room":"lobby","text":"","ref":"r-empty"}`, code: protocol.CodeBadRequest, ref: "r-empty"},
		{name: "missing text", setup: joinLobby, frame: `{"type":"send","room":"lobby","ref":"r-notext"}`, code: protocol.CodeBadRequest, ref: "r-notext"},
		{name: "text on join", frame: `{"type":"join","room":"lobby","text":"hi","ref":"r-tj"}`, code: protocol.CodeBadRequest, ref: "r-tj"},

		// Oversized text (bytes, not runes), joined or not.
		{name: "text one byte over", setup: joinLobby, frame: `{"type":"send","room":"lobby","text":"` + long('x', 4097) + `","ref":"big"}`, code: protocol.CodeTooLarge, ref: "big"},
		{name: "text over in bytes not runes", setup: joinLobby, frame: `{"type":"send","room":"lobby","text":"` + strings.Repeat("é", 2049) + `","ref":"big2"}`, code: protocol.CodeTooLarge, ref: "big2"},
		{name: "text over, escaped", setup: joinLobby, frame: `{"type":"send","room":"lobby","text":"` + strings.Repeat(`\u00e9`, 2049) + `","ref":"big3"}`, code: protocol.CodeTooLarge, ref: "big3"},
		{name: "text over, not joined", frame: `{"type":"send","room":"elsewhere","text":"` + long('x', 5000) + `","ref":"big4"}`, code: protocol.CodeTooLarge, ref: "big4"},

		// Bad room names, whatever the type.
		{name: "join without room", frame: `{"type":"join","ref":"r-nr"}`, code: protocol.CodeInvalidRoom, ref: "r-nr"},
		{name: "join empty room", frame: `{"type":"join","room":""}`, code: protocol.CodeInvalidRoom},
		{name: "join room with space", frame: `{"type":"join","room":"the lobby","ref":"r-sp"}`, code: protocol.CodeInvalidRoom, ref: "r-sp"},
		{name: "join room with slash", frame: `{"type":"join","room":"a/b"}`, code: protocol.CodeInvalidRoom},
		{name: "join room with newline", frame: `{"type":"join","room":"lobby\n"}`, code: protocol.CodeInvalidRoom},
		{name: "join non-ASCII room", frame: `{"type":"join","room":"café"}`, code: protocol.CodeInvalidRoom},
		{name: "join 65-byte room", frame: `{"type":"join","room":"` + long('a', 65) + `"}`, code: protocol.CodeInvalidRoom},
		{name: "send to bad room", frame: `{"type":"send","room":"no room","text":"hi","ref":"r-sbr"}`, code: protocol.CodeInvalidRoom, ref: "r-sbr"},
		{name: "leave bad room", frame: `{"type":"leave","room":"*","ref":"r-lbr"}`, code: protocol.CodeInvalidRoom, ref: "r-lbr"},

		// Rooms not joined.
		{name: "send not joined", frame: `{"type":"send","room":"nowhere","text":"hi","ref":"r-snj"}`, code: protocol.CodeNotJoined, ref: "r-snj"},
		{name: "leave not joined", frame: `{"type":"leave","room":"nowhere","ref":"r-lnj"}`, code: protocol.CodeNotJoined, ref: "r-lnj"},
		{name: "send after leave", setup: joinThenLeave, frame: `{"type":"send","room":"gone","text":"hi","ref":"r-sal"}`, code: protocol.CodeNotJoined, ref: "r-sal"},
		{name: "leave twice", setup: joinThenLeave, frame: `{"type":"leave","room":"gone"}`, code: protocol.CodeNotJoined},
		{name: "send to another room than the joined one", setup: joinLobby, frame: `{"type":"send","room":"lobby2","text":"hi","ref":"r-nb"}`, code: protocol.CodeNotJoined, ref: "r-nb"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := s.dial(t, "")
			if tc.setup != nil {
				tc.setup(t, c)
			}
			s.obs.mu.Lock()
			before := s.obs.requests[string(tc.code)]
			s.obs.mu.Unlock()

			c.SendRaw(websocket.TextMessage, []byte(tc.frame))
			expectErrorEnv(t, c, tc.code, tc.ref)
			s.obs.waitFor(t, "request rejected with "+string(tc.code), func() bool { return s.obs.requests[string(tc.code)] > before })
			assertUsable(t, c)
		})
	}
}

// The edges of every limit are accepted: they are limits, not off-by-ones.
func TestBadInputBoundariesAccepted(t *testing.T) {
	s := newTestServer(t, nil)
	c := s.dial(t, "")

	room64 := strings.Repeat("r", 64)
	if env := c.Join(room64); env["room"] != room64 {
		t.Fatalf("joined %v", env)
	}
	odd := "A-z_0.9"
	c.Join(odd)
	sendAndAck(t, c, odd, "hi", "odd")

	sendAndAck(t, c, room64, strings.Repeat("x", 4096), "max-text")
	sendAndAck(t, c, room64, strings.Repeat("é", 2048), "max-text-2byte")
	ref64 := strings.Repeat("f", protocol.MaxRefBytes)
	sendAndAck(t, c, room64, "hi", ref64)

	// Unknown fields are ignored; a send without ref is acked without one.
	c.SendRaw(websocket.TextMessage, []byte(`{"type":"send","room":"`+odd+`","text":"x","extra":{"a":[1,2]}}`))
	env := awaitReply(t, c)
	if env["type"] != "ack" {
		t.Fatalf("got %v; want ack", env)
	}
	if _, has := env["ref"]; has {
		t.Fatalf("ack %v carries a ref the send did not have", env)
	}
	if n := s.obs.disconnectCount(observe.DisconnectTooLarge); n != 0 {
		t.Fatalf("%d too-large disconnects", n)
	}
}

func TestBadInputRoomLimit(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxRoomsPerConn = 2 })
	c := s.dial(t, "")
	c.Join("a")
	c.Join("b")

	c.Send(map[string]any{"type": "join", "room": "c", "ref": "j3"})
	expectErrorEnv(t, c, protocol.CodeRoomLimit, "j3")
	// The refused join did not join: sending there is not_joined.
	c.Send(map[string]any{"type": "send", "room": "c", "text": "hi", "ref": "s-c"})
	expectErrorEnv(t, c, protocol.CodeNotJoined, "s-c")

	// Joining a room already joined is not a new room.
	if env := c.Join("a"); env["room"] != "a" {
		t.Fatalf("re-join: %v", env)
	}
	sendAndAck(t, c, "b", "still in b", "s-b")

	// Leaving frees a slot.
	c.Send(map[string]any{"type": "leave", "room": "a"})
	c.Expect("left")
	c.Join("c")
	sendAndAck(t, c, "c", "now in c", "s-c2")

	c.Send(map[string]any{"type": "join", "room": "d"})
	expectErrorEnv(t, c, protocol.CodeRoomLimit, "")
}

func TestBadInputAutoJoinQuery(t *testing.T) {
	s := newTestServer(t, nil)
	t.Run("invalid room after welcome, valid ones still joined", func(t *testing.T) {
		c := s.dial(t, query("room", "bad room", "room", "lobby", "room", "x/y"))
		expectErrorEnv(t, c, protocol.CodeInvalidRoom, "")
		if env := c.Expect("joined"); env["room"] != "lobby" {
			t.Fatalf("joined %v; want lobby", env)
		}
		expectErrorEnv(t, c, protocol.CodeInvalidRoom, "")
		sendAndAck(t, c, "lobby", "hi", "r1")
		assertUsable(t, c)
	})
	t.Run("empty room value", func(t *testing.T) {
		c := s.dial(t, "room=")
		expectErrorEnv(t, c, protocol.CodeInvalidRoom, "")
		assertUsable(t, c)
	})
	t.Run("65-byte room", func(t *testing.T) {
		c := s.dial(t, query("room", strings.Repeat("a", 65)))
		expectErrorEnv(t, c, protocol.CodeInvalidRoom, "")
		assertUsable(t, c)
	})
	t.Run("auto-join beyond max rooms", func(t *testing.T) {
		s := newTestServer(t, func(c *Config) { c.MaxRoomsPerConn = 1 })
		c := s.dial(t, query("room", "one", "room", "two"))
		c.Expect("joined")
		expectErrorEnv(t, c, protocol.CodeRoomLimit, "")
		sendAndAck(t, c, "one", "hi", "r1")
	})
}

func TestBadInputCloseCodes(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.MaxTextBytes = 64 // its worst send envelope, 876 bytes, fits the frame limit
		c.MaxFrameBytes = 1024
	})
	// pad builds a valid join envelope of exactly n bytes.
	pad := func(n int) []byte {
		b := []byte(`{"type":"join","room":"padded"}`)
		return append(b, strings.Repeat(" ", n-len(b))...)
	}
	cases := []struct {
		name   string
		mt     int
		frame  []byte
		code   int
		r      string
		reason observe.DisconnectReason
	}{
		{"binary frame", websocket.BinaryMessage, []byte(`{"type":"join","room":"lobby"}`), protocol.CloseUnsupportedData, "binary_frame", observe.DisconnectBinaryFrame},
		{"empty binary frame", websocket.BinaryMessage, nil, protocol.CloseUnsupportedData, "binary_frame", observe.DisconnectBinaryFrame},
		{"invalid UTF-8", websocket.TextMessage, []byte{0xff, 0xfe, 0xfd}, protocol.CloseInvalidPayload, "invalid_utf8", observe.DisconnectInvalidUTF8},
		{"invalid UTF-8 inside JSON", websocket.TextMessage, []byte("{\"type\":\"join\",\"room\":\"lobby\",\"ref\":\"\xc3\x28\"}"), protocol.CloseInvalidPayload, "invalid_utf8", observe.DisconnectInvalidUTF8},
		{"truncated UTF-8 sequence", websocket.TextMessage, []byte("{\"type\":\"send\",\"room\":\"lobby\",\"text\":\"\xe2\x82\"}"), protocol.CloseInvalidPayload, "invalid_utf8", observe.DisconnectInvalidUTF8},
		{"frame one byte over", websocket.TextMessage, pad(1025), protocol.CloseMessageTooBig, "too_large", observe.DisconnectTooLarge},
		{"frame far over", websocket.TextMessage, pad(1 << 20), protocol.CloseMessageTooBig, "too_large", observe.DisconnectTooLarge},
		{"binary frame over the size limit", websocket.BinaryMessage, pad(4096), protocol.CloseUnsupportedData, "binary_frame", observe.DisconnectBinaryFrame},
	}
	// Each message goes out as one frame (gorilla fragments at its write
	// buffer's size): the frame count limit has a test of its own.
	oneFrame := &websocket.Dialer{HandshakeTimeout: waitTimeout, Subprotocols: []string{protocol.Subprotocol}, WriteBufferSize: 2 << 20}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.obs.mu.Lock()
			before := s.obs.closed
			s.obs.mu.Unlock()
			c := s.dialWith(t, dialOpts{dialer: oneFrame})
			c.SendRaw(tc.mt, tc.frame)
			expectCloseWith(t, s, c, tc.code, tc.r, tc.reason)
			// The server really lets go of the connection.
			s.obs.waitFor(t, "connection closed", func() bool { return s.obs.closed > before })
		})
	}

	t.Run("frame exactly at the limit is served", func(t *testing.T) {
		c := s.dial(t, "")
		c.SendRaw(websocket.TextMessage, pad(1024))
		if env := c.Expect("joined"); env["room"] != "padded" {
			t.Fatalf("joined %v", env)
		}
		sendAndAck(t, c, "padded", "hi", "r1")
	})
	t.Run("queued replies are flushed before the close", func(t *testing.T) {
		c := s.dial(t, "")
		c.Send(map[string]any{"type": "join", "room": "flush"})
		c.Send(map[string]any{"type": "shout"})
		c.SendRaw(websocket.BinaryMessage, []byte{1})
		c.Expect("joined")
		expectErrorEnv(t, c, protocol.CodeUnknownType, "")
		expectCloseWith(t, s, c, protocol.CloseUnsupportedData, "binary_frame", observe.DisconnectBinaryFrame)
	})
}

func TestBadInputProtocolErrorAbuse(t *testing.T) {
	const strikes = 3
	bad := []struct {
		name  string
		frame func(i int) string
		code  protocol.ErrorCode
	}{
		{"malformed JSON", func(i int) string { return fmt.Sprintf(`{"ref":"p%d"`, i) }, protocol.CodeBadRequest},
		{"unknown type", func(i int) string { return fmt.Sprintf(`{"type":"nope","ref":"p%d"}`, i) }, protocol.CodeUnknownType},
		{"invalid room", func(i int) string { return fmt.Sprintf(`{"type":"join","room":"a b","ref":"p%d"}`, i) }, protocol.CodeInvalidRoom},
		{"not joined", func(i int) string { return fmt.Sprintf(`{"type":"send","room":"x","text":"t","ref":"p%d"}`, i) }, protocol.CodeNotJoined},
		{"too large", func(i int) string {
			return fmt.Sprintf(`{"type":"send","room":"x","text":%q,"ref":"p%d"}`, strings.Repeat("x", 300), i)
		}, protocol.CodeTooLarge},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, func(c *Config) {
				c.AbuseStrikes = strikes
				c.AbuseWindow = time.Hour // no strike is forgiven during the test
				c.MaxTextBytes = 256
			})
			c := s.dial(t, "")
			ref := func(i int) string { return fmt.Sprintf("p%d", i) }
			// Up to the limit, every error leaves the connection usable.
			for i := 1; i <= strikes; i++ {
				c.SendRaw(websocket.TextMessage, []byte(tc.frame(i)))
				expectErrorEnv(t, c, tc.code, ref(i))
			}
			c.Join("fine") // good requests cost no strike
			if n := s.obs.disconnectCount(observe.DisconnectProtocolError); n != 0 {
				t.Fatalf("closed after %d strikes; the limit is %d", strikes, strikes)
			}
			// One more: its error is still delivered, then 1008.
			c.SendRaw(websocket.TextMessage, []byte(tc.frame(strikes+1)))
			expectErrorEnv(t, c, tc.code, ref(strikes+1))
			expectCloseWith(t, s, c, protocol.ClosePolicyViolation, "protocol_errors", observe.DisconnectProtocolError)
			if n := s.obs.disconnectCount(observe.DisconnectRateAbuse); n != 0 {
				t.Fatalf("protocol errors recorded as %d rate-abuse disconnects", n)
			}
		})
	}
}

func TestBadInputSendRateAbuse(t *testing.T) {
	const (
		burst   = 2
		strikes = 3
		rate    = 0.01 // one token per 100 s: nothing refills during the test
	)
	s := newTestServer(t, func(c *Config) {
		c.SendRate, c.SendBurst = rate, burst
		c.AbuseStrikes, c.AbuseWindow = strikes, time.Hour
	})
	watcher := s.dial(t, query("name", "watcher", "room", "r"))
	base := num(t, watcher.Expect("joined"), "seq") // the room's seq before any message
	c := s.dial(t, query("name", "flooder", "room", "r"))
	c.Expect("joined")

	for i := 1; i <= burst; i++ {
		sendAndAck(t, c, "r", fmt.Sprintf("ok %d", i), fmt.Sprintf("s%d", i))
	}
	// Over the rate: each extra send is dropped with rate_limited, its ref
	// and a retry hint; the connection stays up for strikes of them.
	for i := burst + 1; i <= burst+strikes+1; i++ {
		ref := fmt.Sprintf("s%d", i)
		c.Send(map[string]any{"type": "send", "room": "r", "text": "too fast", "ref": ref})
		env := awaitReply(t, c)
		if env["type"] != "error" || env["code"] != string(protocol.CodeRateLimited) || env["ref"] != ref {
			t.Fatalf("send %d: got %v; want rate_limited with ref %q", i, env, ref)
		}
		retry := num(t, env, "retry_after_ms")
		if maxRetry := int64(1000/rate) + 1; retry <= 0 || retry > maxRetry {
			t.Fatalf("retry_after_ms %d; want in (0, %d]", retry, maxRetry)
		}
		if i <= burst+strikes && s.obs.disconnectCount(observe.DisconnectRateAbuse) != 0 {
			t.Fatalf("closed after %d rate-limited sends; the limit is %d", i-burst, strikes)
		}
	}
	expectCloseWith(t, s, c, protocol.ClosePolicyViolation, "rate_abuse", observe.DisconnectRateAbuse)

	// The dropped messages were never sequenced: the watcher saw exactly
	// the two accepted ones, and the next message in the room is seq 3.
	watcher.Send(map[string]any{"type": "send", "room": "r", "text": "after", "ref": "w1"})
	var seqs []int64
	for acked := false; !acked; {
		env := watcher.Next()
		switch env["type"] {
		case "message":
			seqs = append(seqs, num(t, env, "seq")-base)
		case "ack":
			if env["ref"] != "w1" || num(t, env, "seq")-base != burst+1 {
				t.Fatalf("watcher got %v; want ack w1 seq base+%d", env, burst+1)
			}
			acked = true
		case "presence":
		default:
			t.Fatalf("watcher got %v", env)
		}
	}
	if fmt.Sprint(seqs) != "[1 2 3]" {
		t.Fatalf("watcher saw seqs %v; want [1 2 3]", seqs)
	}
	s.obs.mu.Lock()
	limited := s.obs.requests[string(protocol.CodeRateLimited)]
	s.obs.mu.Unlock()
	if limited != strikes+1 {
		t.Fatalf("%d rate_limited requests recorded; want %d", limited, strikes+1)
	}
}

func TestBadInputJoinRateLimit(t *testing.T) {
	const rate = 0.01
	s := newTestServer(t, func(c *Config) { c.JoinRate, c.JoinBurst = rate, 2 })
	t.Run("explicit joins", func(t *testing.T) {
		c := s.dial(t, "")
		c.Join("a")
		c.Join("b")
		c.Send(map[string]any{"type": "join", "room": "c", "ref": "j3"})
		env := expectErrorEnv(t, c, protocol.CodeRateLimited, "j3")
		if retry := num(t, env, "retry_after_ms"); retry <= 0 || retry > int64(1000/rate)+1 {
			t.Fatalf("retry_after_ms %d", retry)
		}
		// The refused join did not join, and the joined rooms still work.
		c.Send(map[string]any{"type": "send", "room": "c", "text": "hi", "ref": "s-c"})
		expectErrorEnv(t, c, protocol.CodeNotJoined, "s-c")
		sendAndAck(t, c, "a", "hi", "s-a")
	})
	t.Run("auto-joins count too", func(t *testing.T) {
		c := s.dial(t, query("room", "a", "room", "b", "room", "c"))
		c.Expect("joined")
		c.Expect("joined")
		env := expectErrorEnv(t, c, protocol.CodeRateLimited, "")
		if num(t, env, "retry_after_ms") <= 0 {
			t.Fatalf("no retry hint: %v", env)
		}
		sendAndAck(t, c, "b", "hi", "s-b")
	})
}
