package protocol_test

import (
	"encoding/binary"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/gateway/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const maxText = 16

func u64(v uint64) *uint64 { return &v }

func TestDecode(t *testing.T) {
	long65 := strings.Repeat("a", 65)
	long64 := strings.Repeat("a", 64)
	ref64 := strings.Repeat("r", protocol.MaxRefBytes)
	ref65 := strings.Repeat("r", protocol.MaxRefBytes+1)

	tests := []struct {
		name    string
		in      string
		want    protocol.Inbound   // checked when wantErr is empty
		wantErr protocol.ErrorCode // "" means success
		wantRef string             // ref the error must carry
	}{
		// Valid envelopes.
		{name: "join", in: `{"type":"join","room":"lobby"}`,
			want: protocol.Inbound{Type: "join", Room: "lobby"}},
		{name: "join with since", in: `{"type":"join","room":"lobby","since":41}`,
			want: protocol.Inbound{Type: "join", Room: "lobby", Since: u64(41)}},
		{name: "join with since 0", in: `{"type":"join","room":"lobby","since":0}`,
			want: protocol.Inbound{Type: "join", Room: "lobby", Since: u64(0)}},
		{name: "join with since max uint64", in: `{"type":"join","room":"lobby","since":18446744073709551615}`,
			want: protocol.Inbound{Type: "join", Room: "lobby", Since: u64(1<<64 - 1)}},
		{name: "join with null since", in: `{"type":"join","room":"lobby","since":null}`,
			want: protocol.Inbound{Type: "join", Room: "lobby"}},
		{name: "leave", in: `{"type":"leave","room":"a.b_c-D9"}`,
			want: protocol.Inbound{Type: "leave", Room: "a.b_c-D9"}},
		{name: "send", in: `{"type":"send","room":"lobby","text":"hi","ref":"r1"}`,
			want: protocol.Inbound{Type: "send", Room: "lobby", Text: "hi", Ref: "r1"}},
		{name: "send without ref", in: `{"type":"send","room":"lobby","text":"hi"}`,
			want: protocol.Inbound{Type: "send", Room: "lobby", Text: "hi"}},
		{name: "send text exactly at limit", in: `{"type":"send","room":"x","text":"` + strings.Repeat("t", maxText) + `"}`,
			want: protocol.Inbound{Type: "send", Room: "x", Text: strings.Repeat("t", maxText)}},
		{name: "send ref exactly 64 bytes", in: `{"type":"send","room":"x","text":"hi","ref":"` + ref64 + `"}`,
			want: protocol.Inbound{Type: "send", Room: "x", Text: "hi", Ref: ref64}},
		{name: "room of 64 chars", in: `{"type":"join","room":"` + long64 + `"}`,
			want: protocol.Inbound{Type: "join", Room: long64}},
		{name: "unknown fields ignored", in: `{"type":"leave","room":"r","extra":[1,2,{"x":null}]}`,
			want: protocol.Inbound{Type: "leave", Room: "r"}},
		{name: "surrounding whitespace", in: " \n{\"type\":\"leave\",\"room\":\"r\"}\t ",
			want: protocol.Inbound{Type: "leave", Room: "r"}},
		{name: "typing", in: `{"type":"typing","room":"lobby"}`,
			want: protocol.Inbound{Type: "typing", Room: "lobby"}},
		{name: "typing with ref", in: `{"type":"typing","room":"lobby","ref":"t1"}`,
			want: protocol.Inbound{Type: "typing", Room: "lobby", Ref: "t1"}},
		{name: "typing without room", in: `{"type":"typing","ref":"t2"}`, wantErr: protocol.CodeInvalidRoom, wantRef: "t2"},
		{name: "typing with text", in: `{"type":"typing","room":"r","text":"hi"}`, wantErr: protocol.CodeBadRequest},
		{name: "typing with since", in: `{"type":"typing","room":"r","since":1}`, wantErr: protocol.CodeBadRequest},

		// since only on join.
		{name: "since on send", in: `{"type":"send","room":"r","text":"hi","ref":"s1","since":3}`,
			wantErr: protocol.CodeBadRequest, wantRef: "s1"},
		{name: "since on leave", in: `{"type":"leave","room":"r","since":3}`,
			wantErr: protocol.CodeBadRequest},

		// type.
		{name: "missing type", in: `{"room":"r","ref":"m1"}`, wantErr: protocol.CodeBadRequest, wantRef: "m1"},
		{name: "empty type", in: `{"type":"","room":"r"}`, wantErr: protocol.CodeBadRequest},
		{name: "unknown type", in: `{"type":"shout","room":"r","ref":"u1"}`, wantErr: protocol.CodeUnknownType, wantRef: "u1"},
		{name: "unknown type, case differs", in: `{"type":"JOIN","room":"r"}`, wantErr: protocol.CodeUnknownType},
		{name: "very long unknown type", in: `{"type":"` + strings.Repeat("é", 500) + `","room":"r"}`, wantErr: protocol.CodeUnknownType},
		{name: "JSON null", in: `null`, wantErr: protocol.CodeBadRequest},
		{name: "empty object", in: `{}`, wantErr: protocol.CodeBadRequest},

		// rooms.
		{name: "room 65 chars", in: `{"type":"join","room":"` + long65 + `","ref":"i1"}`, wantErr: protocol.CodeInvalidRoom, wantRef: "i1"},
		{name: "room empty", in: `{"type":"join","room":""}`, wantErr: protocol.CodeInvalidRoom},
		{name: "room missing", in: `{"type":"leave"}`, wantErr: protocol.CodeInvalidRoom},
		{name: "room unicode", in: `{"type":"join","room":"café"}`, wantErr: protocol.CodeInvalidRoom},
		{name: "room with space", in: `{"type":"join","room":"a b"}`, wantErr: protocol.CodeInvalidRoom},
		{name: "room with slash", in: `{"type":"join","room":"a/b"}`, wantErr: protocol.CodeInvalidRoom},
		{name: "room with trailing newline", in: `{"type":"join","room":"lobby\n"}`, wantErr: protocol.CodeInvalidRoom},
		{name: "room on send invalid", in: `{"type":"send","room":"#x","text":"hi","ref":"i2"}`, wantErr: protocol.CodeInvalidRoom, wantRef: "i2"},

		// text.
		{name: "send empty text", in: `{"type":"send","room":"r","text":"","ref":"e1"}`, wantErr: protocol.CodeBadRequest, wantRef: "e1"},
		{name: "send missing text", in: `{"type":"send","room":"r"}`, wantErr: protocol.CodeBadRequest},
		{name: "send text over limit", in: `{"type":"send","room":"r","text":"` + strings.Repeat("t", maxText+1) + `","ref":"t1"}`,
			wantErr: protocol.CodeTooLarge, wantRef: "t1"},
		{name: "send text over limit in bytes not runes", in: `{"type":"send","room":"r","text":"` + strings.Repeat("é", maxText/2+1) + `"}`,
			wantErr: protocol.CodeTooLarge},
		{name: "text on join", in: `{"type":"join","room":"r","text":"hi"}`, wantErr: protocol.CodeBadRequest},

		// ref.
		{name: "ref over 64 bytes", in: `{"type":"send","room":"r","text":"hi","ref":"` + ref65 + `"}`, wantErr: protocol.CodeBadRequest},
		{name: "ref not a string", in: `{"type":"send","room":"r","text":"hi","ref":7}`, wantErr: protocol.CodeBadRequest},

		// malformed JSON and wrong field types.
		{name: "not JSON", in: `hello`, wantErr: protocol.CodeBadRequest},
		{name: "empty frame", in: ``, wantErr: protocol.CodeBadRequest},
		{name: "JSON array", in: `[{"type":"join","room":"r"}]`, wantErr: protocol.CodeBadRequest},
		{name: "JSON string", in: `"join"`, wantErr: protocol.CodeBadRequest},
		{name: "truncated, ref salvaged", in: `{"type":"send","ref":"r9","room":"r","text":"h`, wantErr: protocol.CodeBadRequest, wantRef: "r9"},
		{name: "trailing garbage, ref salvaged", in: `{"type":"send","room":"r","text":"hi","ref":"r8"} x`, wantErr: protocol.CodeBadRequest, wantRef: "r8"},
		{name: "truncated before ref", in: `{"type":"send","room":"r","te`, wantErr: protocol.CodeBadRequest},
		{name: "wrong type for text, ref salvaged", in: `{"type":"send","room":"r","text":5,"ref":"w1"}`, wantErr: protocol.CodeBadRequest, wantRef: "w1"},
		{name: "wrong type for type, ref salvaged", in: `{"type":["join"],"room":"r","ref":"w2"}`, wantErr: protocol.CodeBadRequest, wantRef: "w2"},
		{name: "malformed with ref over 64 bytes", in: `{"type":"send","room":"r","text":5,"ref":"` + ref65 + `"}`, wantErr: protocol.CodeBadRequest},
		{name: "negative since, ref salvaged", in: `{"type":"join","room":"r","since":-1,"ref":"n1"}`, wantErr: protocol.CodeBadRequest, wantRef: "n1"},
		{name: "fractional since", in: `{"type":"join","room":"r","since":1.5}`, wantErr: protocol.CodeBadRequest},
		{name: "exponent since", in: `{"type":"join","room":"r","since":1e3}`, wantErr: protocol.CodeBadRequest},
		{name: "string since", in: `{"type":"join","room":"r","since":"41"}`, wantErr: protocol.CodeBadRequest},
		{name: "since over uint64", in: `{"type":"join","room":"r","since":18446744073709551616}`, wantErr: protocol.CodeBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := protocol.Decode([]byte(tc.in), maxText)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode(%s) error %v, want success", tc.in, err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("Decode(%s) = %+v, want %+v", tc.in, got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Decode(%s) = %+v, want error %s", tc.in, got, tc.wantErr)
			}
			if err.Code != tc.wantErr {
				t.Fatalf("Decode(%s) code %q (%s), want %q", tc.in, err.Code, err.Message, tc.wantErr)
			}
			if err.Ref != tc.wantRef {
				t.Fatalf("Decode(%s) ref %q, want %q", tc.in, err.Ref, tc.wantRef)
			}
			if err.Message == "" {
				t.Fatalf("Decode(%s) error has no message", tc.in)
			}
			if !reflect.DeepEqual(got, protocol.Inbound{}) {
				t.Fatalf("Decode(%s) returned %+v alongside an error, want zero Inbound", tc.in, got)
			}
			checkErrorEnvelope(t, err)
		})
	}
}

// checkErrorEnvelope asserts that e encodes to a well-formed error frame.
func checkErrorEnvelope(t testing.TB, e *protocol.Error) {
	t.Helper()
	data := protocol.ErrorEnvelope(e)
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("error envelope %q is not JSON: %v", data, err)
	}
	if m["type"] != "error" || m["code"] != string(e.Code) || m["message"] != e.Message {
		t.Fatalf("error envelope %s does not carry the error %+v", data, e)
	}
	if len(e.Ref) > protocol.MaxRefBytes {
		t.Fatalf("error ref is %d bytes, over the %d limit", len(e.Ref), protocol.MaxRefBytes)
	}
}

func TestDecodeErrorIsGoError(t *testing.T) {
	_, perr := protocol.Decode([]byte(`{"type":"x","room":"r"}`), maxText)
	var err error = perr
	if err == nil || !strings.HasPrefix(err.Error(), "unknown_type: ") {
		t.Fatalf("Error() = %v, want it prefixed with the code", err)
	}
}

func TestValidRoom(t *testing.T) {
	tests := []struct {
		room string
		want bool
	}{
		{"lobby", true},
		{"a", true},
		{"A-Z_a-z.0-9", true},
		{"...", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"café", false},
		{"日本", false},
		{"a b", false},
		{"a\nb", false},
		{"lobby\n", false},
		{"\nlobby", false},
		{"a\x00", false},
		{"room#1", false},
		{"a/b", false},
		{"a+b", false},
	}
	for _, tc := range tests {
		t.Run(tc.room, func(t *testing.T) {
			if got := protocol.ValidRoom(tc.room); got != tc.want {
				t.Fatalf("ValidRoom(%q) = %v, want %v", tc.room, got, tc.want)
			}
		})
	}
}

// decodeObject decodes one encoded frame, failing on trailing data or a
// newline inside it (the writer uses '\n' to separate envelopes).
func decodeObject(t *testing.T, data []byte) map[string]any {
	t.Helper()
	if strings.ContainsRune(string(data), '\n') {
		t.Fatalf("frame %q contains a newline", data)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("frame %q is not a JSON object: %v", data, err)
	}
	return m
}

func TestEncoders(t *testing.T) {
	tru, fls := true, false
	alice := protocol.User{ID: "u1", Name: "alice"}
	bob := protocol.User{ID: "u2", Name: "bob"}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"welcome",
			protocol.Welcome("c1", alice, "n1", protocol.Limits{SendPerSec: 10, SendBurst: 20, MaxTextBytes: 4096, MaxRooms: 16, QueueBytes: 1 << 20, WriteTimeoutMs: 5000, SharedSendPerSec: 20, SharedSendBurst: 40}),
			`{"type":"welcome","conn":"c1","user":{"id":"u1","name":"alice"},"node":"n1","limits":{"send_per_sec":10,"send_burst":20,"max_text_bytes":4096,"max_rooms":16,"queue_bytes":1048576,"write_timeout_ms":5000,"shared_send_per_sec":20,"shared_send_burst":40}}`},
		{"welcome with features and a guest credential",
			protocol.WelcomeWith("c1", alice, "n1", protocol.Limits{SendPerSec: 10, SendBurst: 20}, protocol.WelcomeExtras{
				Features: []string{protocol.FeatureTyping}, Guest: &protocol.GuestGrant{Credential: "g1.k.c.m"}}),
			`{"type":"welcome","conn":"c1","user":{"id":"u1","name":"alice"},"node":"n1","limits":{"send_per_sec":10,"send_burst":20,"max_text_bytes":0,"max_rooms":0,"queue_bytes":0,"write_timeout_ms":0,"shared_send_per_sec":0,"shared_send_burst":0},"features":["typing"],"guest":{"credential":"g1.k.c.m"}}`},
		{"typing",
			protocol.Typing("lobby", alice),
			`{"type":"typing","room":"lobby","from":{"id":"u1","name":"alice"}}`},
		{"joined with members and recovered",
			protocol.Joined("lobby", 41, 2, []protocol.User{alice, bob}, &tru),
			`{"type":"joined","room":"lobby","seq":41,"online":2,"members":[{"id":"u1","name":"alice"},{"id":"u2","name":"bob"}],"recovered":true}`},
		{"joined not recovered",
			protocol.Joined("lobby", 41, 1, []protocol.User{alice}, &fls),
			`{"type":"joined","room":"lobby","seq":41,"online":1,"members":[{"id":"u1","name":"alice"}],"recovered":false}`},
		{"joined count-only without since",
			protocol.Joined("lobby", 0, 5000, nil, nil),
			`{"type":"joined","room":"lobby","seq":0,"online":5000}`},
		{"message",
			protocol.Message("lobby", 42, alice, "hi <b>&\"", 1764100000123),
			`{"type":"message","room":"lobby","seq":42,"from":{"id":"u1","name":"alice"},"text":"hi <b>&\"","ts":1764100000123}`},
		{"message: no HTML escaping, control characters and line separators escaped",
			protocol.Message("lobby", 42, protocol.User{ID: "u<1>", Name: "a&b"}, "<>&\x01\t\u2028\u2029é", 1),
			`{"type":"message","room":"lobby","seq":42,"from":{"id":"u<1>","name":"a&b"},"text":"<>&\u0001\t\u2028\u2029é","ts":1}`},
		{"system message",
			protocol.SystemMessage("lobby", 43, "Moderator", "be nice", 1764100000124),
			`{"type":"message","room":"lobby","seq":43,"from":{"id":"system","name":"Moderator"},"text":"be nice","ts":1764100000124,"system":true}`},
		{"ack",
			protocol.Ack("r1", "lobby", 42),
			`{"type":"ack","ref":"r1","room":"lobby","seq":42}`},
		{"ack without ref",
			protocol.Ack("", "lobby", 42),
			`{"type":"ack","room":"lobby","seq":42}`},
		{"presence",
			protocol.Presence("lobby", []protocol.User{alice}, []protocol.User{bob}, 4),
			`{"type":"presence","room":"lobby","joined":[{"id":"u1","name":"alice"}],"left":[{"id":"u2","name":"bob"}],"online":4}`},
		{"presence count-only",
			protocol.Presence("lobby", nil, nil, 1001),
			`{"type":"presence","room":"lobby","online":1001}`},
		{"left",
			protocol.Left("lobby"),
			`{"type":"left","room":"lobby"}`},
		{"left: removed by a ban",
			protocol.Removed("lobby", protocol.LeftReasonBanned),
			`{"type":"left","room":"lobby","reason":"banned"}`},
		{"error full",
			protocol.ErrorEnvelope(&protocol.Error{Code: protocol.CodeRateLimited, Message: "slow down", Ref: "r1", RetryAfterMs: 500}),
			`{"type":"error","code":"rate_limited","message":"slow down","ref":"r1","retry_after_ms":500}`},
		{"error without ref and retry",
			protocol.ErrorEnvelope(&protocol.Error{Code: protocol.CodeNotJoined, Message: "not joined"}),
			`{"type":"error","code":"not_joined","message":"not joined"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if string(tc.data) != tc.want {
				t.Fatalf("got  %s\nwant %s", tc.data, tc.want)
			}
			if decodeObject(t, tc.data)["type"] == nil {
				t.Fatalf("frame %s has no type", tc.data)
			}
		})
	}
}

func TestEncodersEscapeNewlines(t *testing.T) {
	// A newline in user text must stay escaped so '\n' can separate
	// envelopes in one WebSocket frame.
	data := protocol.Message("r", 1, protocol.User{ID: "i", Name: "a\nb"}, "line1\nline2\r\n", 1)
	m := decodeObject(t, data)
	if m["text"] != "line1\nline2\r\n" {
		t.Fatalf("text round-tripped as %q", m["text"])
	}
}

func TestErrorCodesComplete(t *testing.T) {
	want := []protocol.ErrorCode{"bad_request", "unknown_type", "too_large", "rate_limited", "not_joined",
		"invalid_room", "room_limit", "unavailable", "internal", "forbidden"}
	if !reflect.DeepEqual(protocol.ErrorCodes, want) {
		t.Fatalf("ErrorCodes = %v, want the spec's (plus forbidden from authorization) %v", protocol.ErrorCodes, want)
	}
}

func TestClosePayload(t *testing.T) {
	tests := []struct {
		name       string
		code       int
		reason     protocol.CloseReason
		wantReason string // exact reason text; "" for a cut reason
		wantRetry  int64  // retry_ms a cut reason must keep
	}{
		{name: "drain", code: protocol.CloseGoingAway, reason: protocol.CloseReason{R: "drain", RetryMs: 3400},
			wantReason: `{"r":"drain","retry_ms":3400}`},
		{name: "no retry omitted", code: protocol.CloseHeartbeatTimeout, reason: protocol.CloseReason{R: "heartbeat_timeout"},
			wantReason: `{"r":"heartbeat_timeout"}`},
		{name: "slow consumer", code: protocol.CloseSlowConsumer, reason: protocol.CloseReason{R: "slow_consumer", RetryMs: 1},
			wantReason: `{"r":"slow_consumer","retry_ms":1}`},
		{name: "policy", code: protocol.ClosePolicyViolation, reason: protocol.CloseReason{R: "rate_abuse"},
			wantReason: `{"r":"rate_abuse"}`},
		{name: "long reason is cut", code: protocol.CloseTryAgainLater,
			reason:    protocol.CloseReason{R: strings.Repeat("x", 300), RetryMs: 2500},
			wantRetry: 2500},
		{name: "long reason of escaped characters is cut", code: protocol.CloseInternalError,
			reason: protocol.CloseReason{R: strings.Repeat("<", 200), RetryMs: 7}, wantRetry: 7},
		{name: "long multibyte reason is cut on a rune boundary", code: protocol.CloseInternalError,
			reason: protocol.CloseReason{R: strings.Repeat("é", 100)}},
		{name: "long reason with invalid UTF-8", code: protocol.CloseInternalError,
			reason: protocol.CloseReason{R: strings.Repeat("\xff", 150)}},
		{name: "long reason with max retry", code: protocol.CloseGoingAway,
			reason: protocol.CloseReason{R: strings.Repeat("\"", 120), RetryMs: 1<<63 - 1}, wantRetry: 1<<63 - 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := protocol.ClosePayload(tc.code, tc.reason)
			if len(p) > 125 {
				t.Fatalf("close payload is %d bytes, over 125: %q", len(p), p)
			}
			if len(p) < 2 {
				t.Fatalf("close payload %q has no code", p)
			}
			if got := int(binary.BigEndian.Uint16(p[:2])); got != tc.code {
				t.Fatalf("code = %d, want %d", got, tc.code)
			}
			if p[0] != byte(tc.code>>8) || p[1] != byte(tc.code) {
				t.Fatalf("code bytes %x are not big-endian %d", p[:2], tc.code)
			}
			text := string(p[2:])
			if len(text) > protocol.MaxCloseReasonBytes {
				t.Fatalf("reason is %d bytes, over %d", len(text), protocol.MaxCloseReasonBytes)
			}
			if !utf8.ValidString(text) {
				t.Fatalf("reason %q is not UTF-8 (RFC 6455 requires it)", text)
			}
			if tc.wantReason != "" && text != tc.wantReason {
				t.Fatalf("reason = %s, want %s", text, tc.wantReason)
			}
			cr, ok := protocol.ParseCloseReason(text)
			if !ok {
				t.Fatalf("ParseCloseReason(%q) not ok", text)
			}
			if cr.RetryMs != tc.reason.RetryMs && tc.wantReason != "" {
				t.Fatalf("retry_ms = %d, want %d", cr.RetryMs, tc.reason.RetryMs)
			}
			if tc.wantReason == "" {
				if cr.RetryMs != tc.wantRetry {
					t.Fatalf("retry_ms = %d after cutting, want %d kept", cr.RetryMs, tc.wantRetry)
				}
				if !strings.HasPrefix(tc.reason.R, cr.R) && !strings.ContainsRune(cr.R, utf8.RuneError) {
					t.Fatalf("cut reason %q is not a prefix of %q", cr.R, tc.reason.R)
				}
				if cr.R == "" {
					t.Fatalf("cut reason lost every character: %q", text)
				}
			}
		})
	}
}

func TestParseCloseReason(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		want   protocol.CloseReason
		wantOK bool
	}{
		{"drain", `{"r":"drain","retry_ms":3400}`, protocol.CloseReason{R: "drain", RetryMs: 3400}, true},
		{"no retry", `{"r":"heartbeat_timeout"}`, protocol.CloseReason{R: "heartbeat_timeout"}, true},
		{"extra fields", `{"r":"x","other":1}`, protocol.CloseReason{R: "x"}, true},
		{"empty", ``, protocol.CloseReason{}, false},
		{"plain text", `going away`, protocol.CloseReason{}, false},
		{"no r", `{"retry_ms":5}`, protocol.CloseReason{}, false},
		{"empty r", `{"r":"","retry_ms":5}`, protocol.CloseReason{}, false},
		{"r not a string", `{"r":5}`, protocol.CloseReason{}, false},
		{"bad retry", `{"r":"x","retry_ms":"soon"}`, protocol.CloseReason{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := protocol.ParseCloseReason(tc.text)
			if ok != tc.wantOK || got != tc.want {
				t.Fatalf("ParseCloseReason(%q) = %+v, %v; want %+v, %v", tc.text, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestCloseCodes(t *testing.T) {
	// The numbers are the wire contract.
	tests := []struct {
		name string
		got  int
		want int
	}{
		{"drain", protocol.CloseGoingAway, 1001},
		{"binary", protocol.CloseUnsupportedData, 1003},
		{"utf8", protocol.CloseInvalidPayload, 1007},
		{"policy", protocol.ClosePolicyViolation, 1008},
		{"too big", protocol.CloseMessageTooBig, 1009},
		{"internal", protocol.CloseInternalError, 1011},
		{"overloaded", protocol.CloseTryAgainLater, 1013},
		{"heartbeat", protocol.CloseHeartbeatTimeout, 4001},
		{"slow consumer", protocol.CloseSlowConsumer, 4008},
		{"token expired", protocol.CloseTokenExpired, 4401},
		{"kicked", protocol.CloseKicked, 4403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("close code = %d, want %d", tc.got, tc.want)
			}
		})
	}
}

// The worst-case sizes are real: envelopes built from the worst inputs
// the gateway accepts are exactly that long, and no text of the given
// length, whatever its bytes, makes a longer one.
func TestMaxEnvelopeBytes(t *testing.T) {
	for _, n := range []int{1, 100, 4096} {
		worstText := strings.Repeat("\x1f", n)
		send, err := json.Marshal(map[string]string{"type": "send", "room": strings.Repeat("R", 64), "text": worstText, "ref": strings.Repeat("\x00", protocol.MaxRefBytes)})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := protocol.MaxSendEnvelopeBytes(n), len(send); got != want {
			t.Errorf("MaxSendEnvelopeBytes(%d) = %d; a worst send envelope is %d bytes", n, got, want)
		}
		if in, perr := protocol.Decode(send, n); perr != nil || in.Text != worstText {
			t.Fatalf("the worst send envelope does not decode to its text: %v", perr)
		}
		from := protocol.User{ID: strings.Repeat("\x7f\x01", 64), Name: strings.Repeat("😀", 32)}
		msg := protocol.Message(strings.Repeat("a", 64), 1<<63, from, worstText, -1<<62)
		if max := protocol.MaxMessageEnvelopeBytes(n); len(msg) > max {
			t.Errorf("a message envelope of %d bytes is longer than MaxMessageEnvelopeBytes(%d) = %d", len(msg), n, max)
		}
		sys := protocol.SystemMessage(strings.Repeat("a", 64), 1<<63, strings.Repeat("😀", 32), worstText, -1<<62)
		if max := protocol.MaxMessageEnvelopeBytes(n); len(sys) > max {
			t.Errorf("a system message envelope of %d bytes is longer than MaxMessageEnvelopeBytes(%d) = %d", len(sys), n, max)
		}
		for _, text := range []string{strings.Repeat("<", n), strings.Repeat("\"", n), strings.Repeat("\u2028", n/3), strings.Repeat("é", n/2)} {
			if l := len(protocol.Message("r", 1, from, text, 1)); l > protocol.MaxMessageEnvelopeBytes(n) {
				t.Errorf("text %.8q…: envelope %d bytes > MaxMessageEnvelopeBytes(%d)", text, l, n)
			}
		}
		// '<' is not a worst case any more: it stays one byte.
		if l := len(protocol.Message("r", 1, from, strings.Repeat("<", n), 1)); l > n+protocol.MaxMessageEnvelopeBytes(0) {
			t.Errorf("%d '<' make a %d-byte envelope: they are escaped", n, l)
		}
	}
}
