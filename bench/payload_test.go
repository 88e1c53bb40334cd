package bench

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/protocol"
)

func TestTextRoundTrip(t *testing.T) {
	cases := []struct {
		name    string
		sender  int
		counter uint64
		ns      int64
		size    int
	}{
		{"padded", 12, 345, 1764100000123456789, 64},
		{"fields longer than size", 7, 1 << 40, 1764100000123456789, 10},
		{"zeroes", 0, 0, 0, minTextBytes},
		{"large", 99999, 18446744073709551615, 9223372036854775807, 4096},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := AppendText([]byte("prefix"), "cb1", tc.sender, tc.counter, tc.ns, tc.size)
			text := b[len("prefix"):]
			if len(text) < tc.size {
				t.Fatalf("text %d bytes, want at least %d", len(text), tc.size)
			}
			if tc.size > 60 && len(text) != tc.size {
				t.Fatalf("text %d bytes, want %d", len(text), tc.size)
			}
			if strings.ContainsAny(string(text), "\"\\\n \t") {
				t.Fatalf("text %q needs escaping or trimming", text)
			}
			p, ok := ParseText(text)
			if !ok || string(p.Bench) != "cb1" || p.Sender != tc.sender || p.Counter != tc.counter || p.Intended != tc.ns {
				t.Fatalf("ParseText(%q) = %+v %v", text, p, ok)
			}
		})
	}
	for _, bad := range []string{"", "cb1", "cb1|", "cb1|x1|2|3|", "cb1|s|2|3|", "cb1|s1|2|3", "|s1|2|3|", "cb1|s1|2|99999999999999999999|", "hello world"} {
		if _, ok := ParseText([]byte(bad)); ok {
			t.Errorf("ParseText(%q) accepted", bad)
		}
	}
}

// TestParseEnvelopeMatchesProtocol feeds the gateway's own encoders to the
// bench's allocation-free parser and compares with encoding/json.
func TestParseEnvelopeMatchesProtocol(t *testing.T) {
	yes, no := true, false
	big := uint64(1764100000123000) + 42 // a time-based seq, above 2^50
	user := protocol.User{ID: "u_1", Name: `we"ird \ name`}
	cases := []struct {
		name string
		data []byte
		want envelope
	}{
		{"welcome", protocol.Welcome("c_1", user, "gw", protocol.Limits{SendPerSec: 12.5, SendBurst: 20, MaxTextBytes: 4096, MaxRooms: 16, SharedSendPerSec: 25, SharedSendBurst: 40}),
			envelope{Type: []byte("welcome"), Recovered: -1, SendPerSec: 12.5, SharedSendPerSec: 25}},
		{"message", protocol.Message("r-1", big, user, "cb1|s0|1|5|xx", 99),
			envelope{Type: []byte("message"), Room: []byte("r-1"), Text: []byte("cb1|s0|1|5|xx"), Seq: big, HasSeq: true, Recovered: -1}},
		{"message with escapes", protocol.Message("r", 1, user, "a\"b\\c\nd\u2028", 99),
			envelope{Type: []byte("message"), Room: []byte("r"), Text: []byte("a\"b\\c\nd\u2028"), Seq: 1, HasSeq: true, Recovered: -1}},
		{"ack", protocol.Ack("17", "r", big),
			envelope{Type: []byte("ack"), Room: []byte("r"), Ref: []byte("17"), Seq: big, HasSeq: true, Recovered: -1}},
		{"joined fresh", protocol.Joined("r", 5, 2, []protocol.User{user, {ID: "u_2", Name: "}{]["}}, nil),
			envelope{Type: []byte("joined"), Room: []byte("r"), Seq: 5, HasSeq: true, Online: 2, Recovered: -1}},
		{"joined recovered", protocol.Joined("r", 5, 1, nil, &yes),
			envelope{Type: []byte("joined"), Room: []byte("r"), Seq: 5, HasSeq: true, Online: 1, Recovered: 1}},
		{"joined not recovered", protocol.Joined("r", 5, 1, nil, &no),
			envelope{Type: []byte("joined"), Room: []byte("r"), Seq: 5, HasSeq: true, Online: 1, Recovered: 0}},
		{"error", protocol.ErrorEnvelope(&protocol.Error{Code: protocol.CodeRateLimited, Message: "slow down", Ref: "9", RetryAfterMs: 100}),
			envelope{Type: []byte("error"), Code: []byte("rate_limited"), Ref: []byte("9"), RetryMs: 100, Recovered: -1}},
		{"presence", protocol.Presence("r", []protocol.User{user}, nil, 3),
			envelope{Type: []byte("presence"), Room: []byte("r"), Online: 3, Recovered: -1}},
		{"unknown fields and spaces", []byte(` { "x" : [1, {"y": "}"}], "type" : "left" , "room":"r", "z": null, "w": -1.5e3 } `),
			envelope{Type: []byte("left"), Room: []byte("r"), Recovered: -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got envelope
			if err := parseEnvelope(tc.data, &got); err != nil {
				t.Fatalf("parseEnvelope(%s): %v", tc.data, err)
			}
			if string(got.Type) != string(tc.want.Type) || string(got.Room) != string(tc.want.Room) ||
				string(got.Text) != string(tc.want.Text) || string(got.Ref) != string(tc.want.Ref) ||
				string(got.Code) != string(tc.want.Code) || got.Seq != tc.want.Seq || got.HasSeq != tc.want.HasSeq ||
				got.Recovered != tc.want.Recovered || got.RetryMs != tc.want.RetryMs || got.Online != tc.want.Online ||
				got.SendPerSec != tc.want.SendPerSec {
				t.Fatalf("parseEnvelope(%s)\n got %+v\nwant %+v", tc.data, got, tc.want)
			}
			// encoding/json agrees on what both read.
			var ref struct {
				Type string  `json:"type"`
				Text string  `json:"text"`
				Seq  *uint64 `json:"seq"`
			}
			if err := json.Unmarshal(tc.data, &ref); err != nil {
				t.Fatal(err)
			}
			if ref.Type != string(got.Type) || ref.Text != string(got.Text) || (ref.Seq != nil) != got.HasSeq {
				t.Fatalf("encoding/json reads %+v", ref)
			}
		})
	}
	for _, bad := range []string{``, `{`, `{"type":"message"`, `{"type":message}`, `{"seq":1.5}`, `{"seq":-1}`, `{"seq":99999999999999999999999}`, `[]`, `{"type":"a",}`, `{"recovered":maybe}`} {
		var e envelope
		if err := parseEnvelope([]byte(bad), &e); err == nil {
			t.Errorf("parseEnvelope(%s) accepted", bad)
		}
	}
}

func TestParseEnvelopeAllocs(t *testing.T) {
	frame := protocol.Message("room-1", 1764100000123042, protocol.User{ID: "u_1", Name: "n"}, "cb1|s0|1|5|xxxxxxxx", 99)
	var e envelope
	allocs := testing.AllocsPerRun(100, func() {
		if parseEnvelope(frame, &e) != nil {
			t.Fatal("parse failed")
		}
		if _, ok := ParseText(e.Text); !ok {
			t.Fatal("text")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per message; want 0", allocs)
	}
}

func TestCloseReason(t *testing.T) {
	cases := []struct {
		text string
		want *closeReason
	}{
		{`{"r":"drain","retry_ms":3400}`, &closeReason{R: "drain", RetryMs: 3400}},
		{`{"r":"slow_consumer","retry_ms":870}`, &closeReason{R: "slow_consumer", RetryMs: 870}},
		{`{"r":"too_large"}`, &closeReason{R: "too_large"}},
		{``, nil},
		{`bye`, nil},
		{`{"retry_ms":5}`, nil},
	}
	for _, tc := range cases {
		got := parseCloseReason(tc.text)
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("parseCloseReason(%q) = %+v, want %+v", tc.text, got, tc.want)
		}
	}
}

func TestEnvelopesForTheServer(t *testing.T) {
	text := AppendText(nil, "cb1", 3, 9, 77, 60)
	in, perr := protocol.Decode(appendSend(nil, "cb-cb1-0", text, 9), 4096)
	if perr != nil || in.Type != "send" || in.Room != "cb-cb1-0" || in.Text != string(text) || in.Ref != "9" {
		t.Fatalf("send: %+v %v", in, perr)
	}
	since := uint64(1764100000123042)
	in, perr = protocol.Decode(appendJoin(nil, "r", &since), 4096)
	if perr != nil || in.Type != "join" || in.Since == nil || *in.Since != since {
		t.Fatalf("join: %+v %v", in, perr)
	}
	in, perr = protocol.Decode(appendJoin(nil, "r", nil), 4096)
	if perr != nil || in.Since != nil {
		t.Fatalf("join: %+v %v", in, perr)
	}
}

// BenchmarkReceivePath is what a member does per delivered message: parse
// the envelope, parse the text, account the seq.
func BenchmarkReceivePath(b *testing.B) {
	frame := protocol.Message("cb-x-0", 1764100000123042, protocol.User{ID: "u_9fcebaac2f8e42eb", Name: "guest-9fce"}, string(AppendText(nil, "cbx", 3, 1, 1764100000123456789, 64)), 1764100000123)
	var e envelope
	tr := &tracker{base: 1764100000123000}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for i := 0; b.Loop(); i++ {
		if parseEnvelope(frame, &e) != nil {
			b.Fatal("parse")
		}
		if _, ok := ParseText(e.Text); !ok {
			b.Fatal("text")
		}
		tr.observe(e.Seq + uint64(i))
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := NewHistogram()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i%5000) * time.Microsecond)
	}
}
