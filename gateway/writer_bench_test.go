package gateway

import (
	"log/slog"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
)

// BenchmarkWriter measures the write loop: envelopes queued in batches are
// coalesced into WebSocket messages on a real loopback socket whose reader
// discards them. It reports the cost per envelope written.
func BenchmarkWriter(b *testing.B) {
	for _, batch := range []int{1, 16, 256} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			s := newBenchServer(b)
			cl := s.dial(b, "")
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if _, _, err := cl.Conn().NextReader(); err != nil {
						return
					}
				}
			}()
			c := s.onlyClient(b)
			f := &broker.Frame{Data: []byte(`{"type":"message","room":"lobby","seq":1764100000123001,"from":{"id":"u_0123456789abcdef","name":"alice"},"text":"hello, everyone in the lobby","ts":1764100000123}`)}
			b.ReportAllocs()
			b.ResetTimer()
			for sent := 0; sent < b.N; {
				n := min(batch, b.N-sent)
				for i := 0; i < n; i++ {
					c.Enqueue(f)
				}
				sent += n
				for c.out.liveBytes() > 0 {
					runtime.Gosched()
				}
			}
			b.StopTimer()
			cl.Conn().Close()
			<-done
		})
	}
}

func newBenchServer(b *testing.B) *testServer {
	b.Helper()
	cfg := testConfig()
	cfg.WriteTimeout = time.Minute
	rec := newRecObserver()
	return startTestServer(b, cfg, Options{Observer: observe.Nop{}, Logger: slog.New(slog.DiscardHandler)}, rec)
}
