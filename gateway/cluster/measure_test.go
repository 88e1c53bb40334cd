package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// countSub counts live message frames.
type countSub struct {
	user protocol.User
	n    *atomic.Int64
}

func (s countSub) User() protocol.User { return s.user }
func (s countSub) Enqueue(f *broker.Frame) {
	if !f.Accepted.IsZero() {
		s.n.Add(1)
	}
}

// TestMeasureReplicaLimits measures what two replicas sustain against an
// embedded NATS server in this process (so all three share the machine):
// room set-up, idle cost and throughput over many rooms, and one hot room
// with senders on both. It is skipped unless CHATGATE_CLUSTER_MEASURE=1 (it
// takes tens of seconds); CHATGATE_CLUSTER_ROOMS sets the room count. See
// docs/operations.md, "Measured limits".
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
	ms := make([]broker.Membership, rooms)
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
	for _, m := range []broker.Membership{hotA, hotA, hotB, hotB} {
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

// natsProcess is a real nats-server binary run as a process of its own,
// so its memory can be read apart from the replicas'.
type natsProcess struct {
	url, mon string
}

// startNATSProcess runs the nats-server binary at CHATGATE_NATS_SERVER,
// or builds it from the module cache (the version go.mod requires), with
// JetStream, file storage in a temp dir and its monitoring port on.
func startNATSProcess(t *testing.T) natsProcess {
	t.Helper()
	bin := os.Getenv("CHATGATE_NATS_SERVER")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "nats-server")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			t.Fatalf("building nats-server: %v\n%s", err, out)
		}
	}
	port, mon := freePort(t), freePort(t)
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(mon), "-sd", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := natsProcess{url: fmt.Sprintf("nats://127.0.0.1:%d", port), mon: fmt.Sprintf("http://127.0.0.1:%d", mon)}
	waitUntil(t, "nats-server to answer", func() bool {
		var v struct{}
		return p.get("/healthz?js-enabled-only=true", &v) == nil
	})
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// get reads a monitoring endpoint into v.
func (p natsProcess) get(path string, v any) error {
	resp, err := http.Get(p.mon + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// serverState is what the server reports of itself: resident memory,
// subscriptions and JetStream consumers.
func (p natsProcess) state(t *testing.T) (mem int64, subs, consumers int) {
	t.Helper()
	var varz struct {
		Mem  int64 `json:"mem"`
		Subs int   `json:"subscriptions"`
	}
	var jsz struct {
		Consumers int `json:"consumers"`
	}
	if err := p.get("/varz", &varz); err != nil {
		t.Fatal(err)
	}
	if err := p.get("/jsz", &jsz); err != nil {
		t.Fatal(err)
	}
	return varz.Mem, varz.Subs, jsz.Consumers
}

// TestMeasureServedRoomCost reports what serving rooms costs the NATS
// server, with a real nats-server process: resident memory, subscriptions
// and JetStream consumers per room served per replica, the memory the
// stream adds per room holding a message, and the time a replica takes to
// start serving a room (the first local join: subscribe, read the room's
// position, ask the other replicas for their members). It is skipped
// unless CHATGATE_CLUSTER_MEASURE=1; CHATGATE_CLUSTER_ROOMS (default
// 5000) and CHATGATE_CLUSTER_REPLICAS (default 2) set the size, and
// CHATGATE_NATS_SERVER a nats-server binary (else it builds one). It fails
// if a served room costs a consumer or more than 2 KiB per replica.
func TestMeasureServedRoomCost(t *testing.T) {
	if os.Getenv("CHATGATE_CLUSTER_MEASURE") == "" {
		t.Skip("set CHATGATE_CLUSTER_MEASURE=1 to measure")
	}
	rooms, replicas := 5000, 2
	if v, err := strconv.Atoi(os.Getenv("CHATGATE_CLUSTER_ROOMS")); err == nil {
		rooms = v
	}
	if v, err := strconv.Atoi(os.Getenv("CHATGATE_CLUSTER_REPLICAS")); err == nil {
		replicas = v
	}
	np := startNATSProcess(t)
	bps := make([]*Backplane, replicas)
	for i := range bps {
		cfg := Config{
			URL: np.url, NodeID: fmt.Sprintf("r%d", i), Logger: testLogger(t, fmt.Sprintf("r%d", i)),
			PresenceSync: 5 * time.Second, PresenceTTL: 15 * time.Second, PublishTimeout: 5 * time.Second,
		}
		bps[i] = newBackplane(t, cfg)
	}
	waitUntil(t, "census", func() bool {
		for _, bp := range bps {
			if bp.peers() != replicas-1 {
				return false
			}
		}
		return true
	})
	mem0, subs0, _ := np.state(t)

	var got atomic.Int64
	joins := make([]time.Duration, 0, rooms*replicas)
	first := make([]broker.Membership, rooms)
	for i, bp := range bps {
		for k := range rooms {
			start := time.Now()
			m := mustJoin(t, bp, countSub{protocol.User{ID: fmt.Sprintf("u%d-%d", i, k)}, &got}, fmt.Sprintf("room-%d", k), nil)
			joins = append(joins, time.Since(start))
			if i == 0 {
				first[k] = m
			}
		}
	}
	// The server's garbage from the set-ups (requests, inboxes) is part of
	// its resident memory until its next collection: an idle Go process
	// collects at least every 2 minutes. CHATGATE_CLUSTER_SETTLE waits for
	// that before reading (for example 130s).
	if d, err := time.ParseDuration(os.Getenv("CHATGATE_CLUSTER_SETTLE")); err == nil {
		time.Sleep(d)
	}
	mem1, subs1, consumers := np.state(t)
	for _, m := range first {
		if _, perr := m.Publish(context.Background(), "measure", ""); perr != nil {
			t.Fatal(perr)
		}
	}
	waitUntil(t, "every message delivered on every replica", func() bool { return got.Load() >= int64(rooms*replicas) })
	mem2, _, _ := np.state(t)

	slices.Sort(joins)
	q := func(p float64) time.Duration { return joins[int(p*float64(len(joins)-1))] }
	served := float64(rooms * replicas)
	perRoom := float64(mem1-mem0) / served
	t.Logf("%d rooms served on each of %d replicas: NATS server +%.0f bytes resident and %.2f subscriptions per room and replica, %d JetStream consumers",
		rooms, replicas, perRoom, float64(subs1-subs0)/served, consumers)
	t.Logf("one message stored in each room: +%.0f bytes resident per room (the stream, not the replicas)", float64(mem2-mem1)/float64(rooms))
	t.Logf("first join of a room on a replica: p50 %v, p90 %v, p99 %v, max %v", q(0.5), q(0.9), q(0.99), joins[len(joins)-1])
	if consumers != 0 {
		t.Errorf("%d JetStream consumers; serving rooms should create none", consumers)
	}
	if perRoom > 2048 {
		t.Errorf("%.0f bytes of NATS server memory per served room and replica; the target is at most 2 KiB", perRoom)
	}
}
