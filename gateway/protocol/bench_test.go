package protocol_test

import (
	"testing"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// The broadcast path encodes each message once, whatever the room size.
func BenchmarkEncodeMessage(b *testing.B) {
	from := protocol.User{ID: "u_0123456789abcdef", Name: "alice"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = protocol.Message("lobby", uint64(i), from, "hello, everyone in the lobby", 1764100000123)
	}
}

func BenchmarkDecodeSend(b *testing.B) {
	frame := []byte(`{"type":"send","room":"lobby","text":"hello, everyone in the lobby","ref":"r-123"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for i := 0; i < b.N; i++ {
		if _, err := protocol.Decode(frame, 4096); err != nil {
			b.Fatal(err)
		}
	}
}
