package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// fault says what the fake server does to one member's copy of message i
// (i counts the bench messages of the room from 0, in sequencing order).
type fault struct {
	drop, dup, swap map[int]bool // swap: deliver i+1 before i
}

// fakeServer is a small WebSocket server built on gorilla that speaks just
// enough of chatgate's protocol (or, raw, the gorilla chat example's) to
// run the bench, and that drops, duplicates and reorders on purpose,
// per member (by its name query parameter) and per message.
type fakeServer struct {
	t      *testing.T
	raw    bool
	faults map[string]fault
	up     websocket.Upgrader

	mu      sync.Mutex
	seq     uint64
	n       int // bench messages sequenced
	members []*fakeMember
	wg      sync.WaitGroup // connection handlers
	ts      *httptest.Server
}

type fakeMember struct {
	name string
	ws   *websocket.Conn
	wmu  sync.Mutex
	held []byte // a frame held back for a swap
}

func (m *fakeMember) write(b []byte) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	_ = m.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = m.ws.WriteMessage(websocket.TextMessage, b)
}

func newFakeServer(t *testing.T, raw bool, faults map[string]fault) *fakeServer {
	f := &fakeServer{t: t, raw: raw, faults: faults, seq: 1764100000123000}
	f.up = websocket.Upgrader{Subprotocols: []string{protocol.Subprotocol}}
	f.ts = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.mu.Lock()
		for _, m := range f.members {
			m.ws.Close()
		}
		f.mu.Unlock()
		f.ts.Close()
		waitGroup(t, &f.wg, 10*time.Second)
	})
	return f
}

func waitGroup(t *testing.T, wg *sync.WaitGroup, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-done:
	case <-tm.C:
		t.Errorf("handlers still running after %v", d)
	}
}

func (f *fakeServer) url() string { return "ws" + strings.TrimPrefix(f.ts.URL, "http") + "/ws" }

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	ws, err := f.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	f.wg.Add(1)
	defer f.wg.Done()
	m := &fakeMember{name: r.URL.Query().Get("name"), ws: ws}
	user := protocol.User{ID: "u_" + m.name, Name: m.name}
	defer func() {
		f.mu.Lock()
		for i, x := range f.members {
			if x == m {
				f.members = append(f.members[:i], f.members[i+1:]...)
				break
			}
		}
		f.mu.Unlock()
		ws.Close()
	}()
	if f.raw {
		f.mu.Lock()
		f.members = append(f.members, m)
		f.mu.Unlock()
	} else {
		m.write(protocol.Welcome("c_"+m.name, user, "fake", protocol.Limits{SendPerSec: 1000, SendBurst: 1000, MaxTextBytes: 4096, MaxRooms: 16}))
	}
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if f.raw {
			f.broadcast(m, data, nil)
			continue
		}
		in, perr := protocol.Decode(data, 4096)
		if perr != nil {
			m.write(protocol.ErrorEnvelope(perr))
			continue
		}
		switch in.Type {
		case protocol.TypeJoin:
			f.mu.Lock()
			m.write(protocol.Joined(in.Room, f.seq, len(f.members)+1, nil, nil))
			f.members = append(f.members, m)
			f.mu.Unlock()
		case protocol.TypeSend:
			f.broadcast(m, nil, func(seq uint64) []byte { return protocol.Message(in.Room, seq, user, in.Text, 1) })
			f.mu.Lock()
			seq := f.seq
			f.mu.Unlock()
			m.write(protocol.Ack(in.Ref, in.Room, seq))
		}
	}
}

// broadcast sequences one message and hands it to every member, applying
// the faults. raw messages are sent as they came (the probe is not a bench
// message and is never faulted).
func (f *fakeServer) broadcast(from *fakeMember, raw []byte, encode func(seq uint64) []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	frame := raw
	isBench := true
	if raw != nil {
		p, ok := ParseText(raw)
		isBench = ok && p.Sender >= 0
	} else {
		f.seq++
		frame = encode(f.seq)
	}
	i := f.n
	if isBench {
		f.n++
	}
	for _, m := range f.members {
		fl := f.faults[m.name]
		switch {
		case !isBench:
			m.write(frame)
		case fl.drop[i]:
		case fl.swap[i]:
			m.held = frame
		default:
			m.write(frame)
			if fl.dup[i] {
				m.write(frame)
			}
			if m.held != nil {
				m.write(m.held)
				m.held = nil
			}
		}
	}
}

func set(is ...int) map[int]bool {
	m := map[int]bool{}
	for _, i := range is {
		m[i] = true
	}
	return m
}

// TestAccountingAgainstFaultyServer runs a fanout against the fake server
// and checks the exact counts of what it broke.
func TestAccountingAgainstFaultyServer(t *testing.T) {
	// One sender (s0, member 0) and four listeners l1..l4; 20 messages, so
	// 5 members × 20 = 100 deliveries expected.
	faults := map[string]fault{
		"l1": {drop: set(5, 9)},
		"l2": {dup: set(3)},
		"l3": {swap: set(7)},
		"l4": {drop: set(2), dup: set(4), swap: set(10)},
	}
	for _, proto := range []string{ProtoChatgate, ProtoRaw} {
		t.Run(proto, func(t *testing.T) {
			f := newFakeServer(t, proto == ProtoRaw, faults)
			cfg := testConfig(f.url())
			cfg.Proto = proto
			cfg.Conns, cfg.Senders, cfg.Rate, cfg.Messages = 5, 1, 200, 20
			cfg.Duration, cfg.Settle = 2*time.Second, 300*time.Millisecond
			res, code := Run(context.Background(), cfg, Options{})
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, res.Error)
			}
			c := res.Correctness
			want := Correctness{MembersChecked: 5, Expected: 100, Received: 97, Lost: 3, LossRatio: 0.03, Duplicated: 2, OutOfOrder: 2}
			c.Unconfirmed, c.Foreign = 0, 0
			want.ExcludedBy = map[string]int64{}
			if !reflect.DeepEqual(c, want) {
				t.Fatalf("correctness\n got %+v\nwant %+v", c, want)
			}
			if res.Messages.Sent != 20 || res.Messages.Deliveries != 99 {
				t.Fatalf("sent %d deliveries %d; want 20 and 99 (97 + 2 duplicates)", res.Messages.Sent, res.Messages.Deliveries)
			}
			if proto == ProtoChatgate && res.Messages.Acked != 20 {
				t.Fatalf("acked %d", res.Messages.Acked)
			}
		})
	}
}

// testConfig is a small, quiet run against url.
func testConfig(url string) Config {
	cfg := DefaultConfig()
	cfg.URLs = []string{url}
	cfg.Progress = "off"
	cfg.HandshakeTimeout = 5 * time.Second
	cfg.Interval = 100 * time.Millisecond
	cfg.BenchID = "t" + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	return cfg
}

// TestThresholdExitCode checks that a missed SLO or loss threshold makes the
// run fail with exit 1 and says why, in the table and in the JSON.
func TestThresholdExitCode(t *testing.T) {
	faults := map[string]fault{"l1": {drop: set(1)}}
	cases := []struct {
		name     string
		mutate   func(*Config)
		wantCode int
		wantText string
	}{
		{"no thresholds", func(*Config) {}, ExitOK, ""},
		{"slo missed", func(c *Config) { c.SLOP99 = time.Nanosecond }, ExitThreshold, "slo-p99"},
		{"slo met", func(c *Config) { c.SLOP99 = time.Minute }, ExitOK, "PASS"},
		{"loss count missed", func(c *Config) { c.MaxLoss = LossLimit{Given: true} }, ExitThreshold, "max-loss: 1 lost"},
		{"loss share met", func(c *Config) { _ = c.MaxLoss.Set("10%") }, ExitOK, "PASS"},
		{"connect errors met", func(c *Config) { c.MaxConnectErrors = 0 }, ExitOK, "PASS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, false, faults)
			cfg := testConfig(f.url())
			cfg.Conns, cfg.Senders, cfg.Rate, cfg.Messages = 3, 1, 200, 5
			cfg.Duration, cfg.Settle = 2*time.Second, 200*time.Millisecond
			tc.mutate(&cfg)
			var out bytes.Buffer
			res, code := Run(context.Background(), cfg, Options{Stdout: &out})
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\n%s", code, tc.wantCode, out.String())
			}
			if !strings.Contains(out.String(), tc.wantText) {
				t.Fatalf("output lacks %q:\n%s", tc.wantText, out.String())
			}
			if res.Thresholds.Passed != (tc.wantCode == ExitOK) {
				t.Fatalf("thresholds %+v", res.Thresholds)
			}
			b, _ := json.Marshal(res)
			if tc.wantCode == ExitThreshold && !strings.Contains(string(b), `"passed":false`) {
				t.Fatalf("JSON: %s", b)
			}
		})
	}
}
