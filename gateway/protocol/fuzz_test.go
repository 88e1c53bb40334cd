package protocol_test

import (
	"encoding/json"
	"testing"

	"github.com/chatgate/chatgate/gateway/protocol"
)

func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"type":"join","room":"lobby"}`,
		`{"type":"join","room":"lobby","since":41}`,
		`{"type":"leave","room":"lobby"}`,
		`{"type":"send","room":"lobby","text":"hi","ref":"r1"}`,
		`{"type":"send","room":"lobby","text":"","ref":"r1"}`,
		`{"type":"send","room":"lobby","text":"hi","since":1}`,
		`{"type":"send","room":"café","text":"hi"}`,
		`{"type":"shout","room":"lobby"}`,
		`{"room":"lobby"}`,
		`{"type":"join","room":"lobby","since":-1,"ref":"x"}`,
		`{"type":"join","room":"lobby","since":1.5}`,
		`{"type":"send","room":"lobby","text":"hi","ref":"r1"`,
		`{"type":"send","ref":"\u00e9\ud800","room":"a","text":"\xff"}`,
		`[1,2,3]`,
		`null`,
		``,
		"\xff\xfe",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	const maxText = 64
	f.Fuzz(func(t *testing.T, data []byte) {
		in, perr := protocol.Decode(data, maxText)
		if perr == nil {
			switch in.Type {
			case protocol.TypeJoin, protocol.TypeLeave, protocol.TypeSend:
			default:
				t.Fatalf("Decode(%q) accepted type %q", data, in.Type)
			}
			if !protocol.ValidRoom(in.Room) {
				t.Fatalf("Decode(%q) accepted room %q", data, in.Room)
			}
			if len(in.Text) > maxText {
				t.Fatalf("Decode(%q) accepted %d bytes of text, limit %d", data, len(in.Text), maxText)
			}
			if in.Type == protocol.TypeSend && in.Text == "" {
				t.Fatalf("Decode(%q) accepted a send without text", data)
			}
			if in.Type != protocol.TypeSend && in.Text != "" {
				t.Fatalf("Decode(%q) accepted text on %s", data, in.Type)
			}
			if in.Type != protocol.TypeJoin && in.Since != nil {
				t.Fatalf("Decode(%q) accepted since on %s", data, in.Type)
			}
			if len(in.Ref) > protocol.MaxRefBytes {
				t.Fatalf("Decode(%q) accepted a %d-byte ref", data, len(in.Ref))
			}
			return
		}
		if len(perr.Ref) > protocol.MaxRefBytes {
			t.Fatalf("Decode(%q) error carries a %d-byte ref", data, len(perr.Ref))
		}
		env := protocol.ErrorEnvelope(perr)
		var m struct {
			Type    string `json:"type"`
			Code    string `json:"code"`
			Message string `json:"message"`
			Ref     string `json:"ref"`
		}
		if err := json.Unmarshal(env, &m); err != nil {
			t.Fatalf("Decode(%q) error envelope %q is not JSON: %v", data, env, err)
		}
		if m.Type != "error" || m.Code != string(perr.Code) || m.Message == "" {
			t.Fatalf("Decode(%q) error envelope %s is malformed", data, env)
		}
		known := false
		for _, c := range protocol.ErrorCodes {
			known = known || c == perr.Code
		}
		if !known {
			t.Fatalf("Decode(%q) returned unknown code %q", data, perr.Code)
		}
	})
}
