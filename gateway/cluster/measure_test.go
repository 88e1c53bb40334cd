package cluster

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatgate/chatgate/gateway/hub"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// countSub counts live message frames.
type countSub struct {
	user protocol.User
	n    *atomic.Int64
}

func (s countSub) User() protocol.User { return s.user }
func (s countSub) Enqueue(f *hub.Frame) {
	if !f.Accepted.IsZero() {
		s.n.Add(1)
	}
}

// TestMeasureReplicaLimits measures what one replica sustains against an
// embedded NATS server on this machine. It is skipped unless
// CHATGATE_CLUSTER_MEASURE=1 (it takes tens of seconds); its numbers are the
// ones in docs/operations.md. CHATGATE_CLUSTER_ROOMS sets the room count.
func TestMeasureReplicaLimits(t *testing.T) {
	if os.Getenv("CHATGATE_CLUSTER_MEASURE") == "" {
		t.Skip("set CHATGATE_CLUSTER_MEASURE=1 to measure")
	}
	rooms := 2000
	if v, err := strconv.Atoi(os.Getenv("CHATGATE_CLUSTER_ROOMS")); err == nil {
		rooms = v
	}
	ns := startNATS(t)
	cfg := func(name string) Config {
		c := testBackplaneConfig(t, ns, name)
		c.PresenceSync, c.PresenceTTL = 5*time.Second, 15*time.Second
		if os.Getenv("CHATGATE_CLUSTER_MEMORY") != "" {
			c.Storage = jetstream.MemoryStorage
		}
		return c
	}
	a := newBackplane(t, cfg("a"))
	b := newBackplane(t, cfg("b"))
	waitUntil(t, "census", func() bool { return a.peers() == 1 && b.peers() == 1 })

	// Rooms: one member per room on each replica.
	var got atomic.Int64
	g0 := runtime.NumGoroutine()
	start := time.Now()
	ms := make([]hub.Membership, rooms)
	for i := range rooms {
		ms[i] = mustJoin(t, a, countSub{protocol.User{ID: "u_a" + strconv.Itoa(i)}, &got}, fmt.Sprintf("room-%d", i), nil)
	}
	openA := time.Since(start)
	start = time.Now()
	for i := range rooms {
		mustJoin(t, b, countSub{protocol.User{ID: "u_b" + strconv.Itoa(i)}, &got}, fmt.Sprintf("room-%d", i), nil)
	}
	openB := time.Since(start)
	var mem runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&mem)
	t.Logf("rooms: %d per replica; first joins %v/room on a (no peer holds them), %v/room on b (sync with a); goroutines +%d for both replicas; heap %d MiB",
		rooms, openA/time.Duration(rooms), openB/time.Duration(rooms), runtime.NumGoroutine()-g0, mem.HeapInuse>>20)

	// Idle cost: let a few presence periods pass.
	var ru0, ru1 runtime.MemStats
	runtime.ReadMemStats(&ru0)
	time.Sleep(6 * time.Second)
	runtime.ReadMemStats(&ru1)
	t.Logf("idle: %d allocs/s in this process (both replicas + NATS)", (ru1.Mallocs-ru0.Mallocs)/6)

	// Throughput: publishers on a spread over the rooms, every message
	// delivered on a and b (2 deliveries each).
	for _, workers := range []int{16, 64} {
		got.Store(0)
		var sent atomic.Int64
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var wg sync.WaitGroup
		start = time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; ctx.Err() == nil; i += workers {
					if _, perr := ms[i%rooms].Publish(context.Background(), "measure", ""); perr == nil {
						sent.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		cancel()
		elapsed := time.Since(start)
		waitUntil(t, "deliveries", func() bool { return got.Load() >= 2*sent.Load() })
		t.Logf("throughput, %d concurrent senders on a over %d rooms: %.0f msgs/s stored and delivered on both replicas (%.0f deliveries/s per replica)",
			workers, rooms, float64(sent.Load())/elapsed.Seconds(), float64(got.Load())/2/elapsed.Seconds())
	}

	// One hot room, senders on both replicas (optimistic concurrency).
	got.Store(0)
	var sent atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	hotA := mustJoin(t, a, countSub{protocol.User{ID: "u_hot_a"}, &got}, "hot", nil)
	hotB := mustJoin(t, b, countSub{protocol.User{ID: "u_hot_b"}, &got}, "hot", nil)
	var wg sync.WaitGroup
	start = time.Now()
	for _, m := range []hub.Membership{hotA, hotA, hotB, hotB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, perr := m.Publish(context.Background(), "hot", ""); perr == nil {
					sent.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	t.Logf("one hot room, 2 senders on each of 2 replicas: %.0f msgs/s", float64(sent.Load())/time.Since(start).Seconds())
}
