package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/api"
)

// engine runs the traffic scenarios (fanout, rooms, slow, drain, and the
// stable members of churn): members spread over rooms, some of them
// sending on an open-loop schedule, every one of them checked by seq.
type engine struct {
	cfg   *Config
	opts  *Options
	id    string
	rooms []string

	members []*member
	// byRoom lists member indexes per room; senders lists, per room, the
	// global sender ids.
	byRoom  [][]int
	senders [][]int

	ledger  *ledger
	api     *api.Client // --via api: senders publish through it
	lat     *Recorder   // live deliveries to healthy members
	slowLat *Recorder   // deliveries to slow members

	connMu              sync.Mutex
	connHist            *Histogram
	connFirst, connLast time.Time

	up          atomic.Int64 // connections up now
	attempted   atomic.Int64
	established atomic.Int64
	deliveries  atomic.Int64
	slowDeliv   atomic.Int64
	sent        atomic.Int64
	acked       atomic.Int64
	rejected    atomic.Int64
	writeFailed atomic.Int64
	presence    atomic.Int64
	foreign     atomic.Int64
	maxLag      atomic.Int64
	late        atomic.Int64
	reconnects  atomic.Int64
	reconnFail  atomic.Int64

	// Evictions and sheds as they happen (the sessions append), for the
	// report's events.
	closeMu    sync.Mutex
	closeTimes []closeAt

	errs       tally // client errors by kind
	closes     tally // unexpected closes by code
	status     tally // refused handshakes by HTTP status
	refusals   tally // refused handshakes by status and the server's words
	errorCodes tally // chatgate error envelopes by code

	sendLimit   atomic.Uint64 // math.Float64bits of welcome.limits.send_per_sec, first seen
	sharedLimit atomic.Uint64 // math.Float64bits of welcome.limits.shared_send_per_sec, first seen

	reconnect    bool
	ending       atomic.Bool
	stallAt      atomic.Int64 // unix ns at which slow members stop reading; 0 never
	sockets      *sockQueues  // set when slow members stall until the gateway's writes block
	kernelSeen   atomic.Int64 // the most the gateway's socket held when its writes blocked
	resume       chan struct{}
	resumeOnce   sync.Once
	sendDeadline time.Time // senders give up waiting for a connection then
}

func newEngine(cfg *Config, opts *Options, id string) *engine {
	shards := max(4, 2*runtime.GOMAXPROCS(0))
	e := &engine{
		cfg:      cfg,
		opts:     opts,
		id:       id,
		ledger:   newLedger(),
		lat:      NewRecorder(shards),
		slowLat:  NewRecorder(2),
		connHist: NewHistogram(),
		resume:   make(chan struct{}),
	}
	e.reconnect = cfg.Scenario == ScenarioDrain
	e.rooms = make([]string, cfg.Rooms)
	e.byRoom = make([][]int, cfg.Rooms)
	e.senders = make([][]int, cfg.Rooms)
	for r := range e.rooms {
		e.rooms[r] = fmt.Sprintf("cb-%s-%d", id, r)
	}
	slowShare := 0.0
	if cfg.Scenario == ScenarioSlow {
		slowShare = cfg.SlowShare
	}
	listeners, senderID := 0, 0
	for i := 0; i < cfg.Conns; i++ {
		r := i % cfg.Rooms
		m := &member{e: e, idx: i, room: r, sender: -1, url: i % len(cfg.URLs),
			up: make(chan struct{}), joined: make(chan struct{}), refused: make(chan struct{}), done: make(chan struct{})}
		if len(cfg.SourceIPs) > 0 {
			m.src = cfg.SourceIPs[i%len(cfg.SourceIPs)]
		}
		if len(e.senders[r]) < cfg.Senders {
			m.sender = senderID
			e.senders[r] = append(e.senders[r], senderID)
			senderID++
			m.name = "s" + strconv.Itoa(m.sender)
		} else {
			// Every listener whose share crosses a whole number is slow:
			// spread evenly and deterministic.
			m.slow = int(float64(listeners+1)*slowShare) > int(float64(listeners)*slowShare)
			listeners++
			m.name = "l" + strconv.Itoa(i)
		}
		e.byRoom[r] = append(e.byRoom[r], i)
		e.members = append(e.members, m)
	}
	return e
}

// targetDeliveries is deliveries per second the schedule asks for.
func (e *engine) targetDeliveries() float64 {
	var t float64
	for r := range e.rooms {
		t += float64(len(e.senders[r])) * e.cfg.Rate * float64(len(e.byRoom[r]))
	}
	return t
}

func (e *engine) dialOpts(m *member) dialOpts {
	o := dialOpts{proto: e.cfg.Proto, src: m.src, timeout: e.cfg.HandshakeTimeout, creds: e.cfg.creds, conn: m.idx}
	if m.slow && e.cfg.SlowRcvBuf > 0 {
		// A small receive buffer and segment size, as on a poor mobile
		// link, keep the kernel from absorbing megabytes on the server's
		// side (loopback's 64 KiB segments let its send buffer grow
		// large), so the server's own queue fills soon.
		o.rcvBuf, o.mss = e.cfg.SlowRcvBuf, slowMSS
	}
	return o
}

// ---- connection setup ----

// connectAll opens every member, at most DialConcurrency at a time, paced
// by ConnectRate when set, and waits until each is joined (or failed).
func (e *engine) connectAll(ctx context.Context) {
	sem := make(chan struct{}, e.cfg.DialConcurrency)
	var wg sync.WaitGroup
	sched := Schedule{Start: time.Now(), Interval: IntervalFor(e.cfg.ConnectRate)}
	for i, m := range e.members {
		intended := time.Now()
		if sched.Interval > 0 {
			intended = sched.At(i)
			if realClock.SleepUntil(ctx, intended) != nil {
				break
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m.start(ctx, intended)
		}()
	}
	wg.Wait()
	for _, m := range e.members {
		if !m.connected {
			m.finishUnstarted()
		}
	}
}

// withName adds name=... to a URL's query: it shows up as the display name
// in chatgate's welcome and logs, and lets test servers tell members apart.
func withName(raw, name string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	q.Set("name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

func (e *engine) recordConnect(intended, at time.Time) {
	e.connMu.Lock()
	e.connHist.Record(at.Sub(intended))
	if e.connFirst.IsZero() || intended.Before(e.connFirst) {
		e.connFirst = intended
	}
	if at.After(e.connLast) {
		e.connLast = at
	}
	e.connMu.Unlock()
}

// probePrefix starts the raw barrier message: "<bench id>|p|".
func (e *engine) probePrefix() []byte { return []byte(e.id + "|p|") }

// probe is the raw barrier: the server gives no join confirmation, so one
// member of each room repeats a probe message until every connected member
// of the room has seen one (the server has registered them all).
func (e *engine) probe(ctx context.Context) {
	deadline := time.Now().Add(e.cfg.HandshakeTimeout)
	for r, idxs := range e.byRoom {
		var prober *member
		for _, i := range idxs {
			if e.members[i].connected {
				prober = e.members[i]
				break
			}
		}
		if prober == nil {
			continue
		}
		msg := append(e.probePrefix(), strconv.Itoa(r)...)
	probing:
		for time.Now().Before(deadline) {
			ws := prober.conn()
			if ws == nil {
				break
			}
			_ = ws.SetWriteDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
			if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
				break
			}
			if realClock.SleepUntil(ctx, time.Now().Add(100*time.Millisecond)) != nil {
				return
			}
			all := true
			for _, i := range idxs {
				m := e.members[i]
				select {
				case <-m.joined:
				default:
					all = all && !m.connected
				}
			}
			if all {
				break probing
			}
		}
	}
	for _, m := range e.members {
		select {
		case <-m.joined:
		default:
			if m.connected {
				e.errs.add("probe_timeout", 1)
			}
		}
	}
}

// ---- the end ----

// expectedFresh is how many positions member m should have by now.
func (e *engine) expectedFresh(m *member, cache map[[2]uint64]int) int {
	if e.cfg.Proto == ProtoRaw {
		n := 0
		for _, s := range e.senders[m.room] {
			n += e.ledger.count(streamKey{m.room, s}, 0)
		}
		return n
	}
	if m.tr == nil {
		return 0
	}
	key := [2]uint64{uint64(m.room), m.tr.base}
	if n, ok := cache[key]; ok {
		return n
	}
	n := e.ledger.count(streamKey{m.room, -1}, m.tr.base)
	cache[key] = n
	return n
}

// settled reports whether every send is answered, no member is between a
// close and its rejoin, and every healthy member has every message known to
// exist.
func (e *engine) settled() bool {
	for _, m := range e.members {
		if m.reconnecting.Load() {
			return false
		}
	}
	for _, m := range e.members {
		if m.sender < 0 || m.conn() == nil {
			continue
		}
		if e.cfg.Proto == ProtoChatgate && m.nAcked.Load()+m.nReject.Load() < m.nSent.Load() {
			return false
		}
	}
	cache := map[[2]uint64]int{}
	for _, m := range e.members {
		if !m.healthy() || m.conn() == nil {
			continue
		}
		if int(m.fresh.Load()) < e.expectedFresh(m, cache) {
			return false
		}
	}
	return true
}

// waitSettled polls settled until it holds or the settle time is over.
func (e *engine) waitSettled(ctx context.Context) {
	deadline := time.Now().Add(e.cfg.Settle)
	for !e.settled() {
		wait := min(time.Until(deadline), 20*time.Millisecond)
		if wait <= 0 || realClock.SleepUntil(ctx, time.Now().Add(wait)) != nil {
			return
		}
	}
}

func (e *engine) resumeSlow() { e.resumeOnce.Do(func() { close(e.resume) }) }

// waitSlow gives resumed slow members time to read their backlog and
// their close frame.
func (e *engine) waitSlow(ctx context.Context) {
	deadline := time.NewTimer(max(e.cfg.Settle, 2*time.Second))
	defer deadline.Stop()
	for _, m := range e.members {
		if !m.slow {
			continue
		}
		select {
		case <-m.done:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// shutdown closes every connection: a close frame first, then, for those
// that do not answer in time, the socket.
func (e *engine) shutdown() {
	e.ending.Store(true)
	e.resumeSlow()
	for _, m := range e.members {
		m.markGone()
		if ws := m.conn(); ws != nil {
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		}
	}
	deadline := time.NewTimer(3 * time.Second)
	defer deadline.Stop()
waitAll:
	for _, m := range e.members {
		select {
		case <-m.done:
		case <-deadline.C:
			break waitAll
		}
	}
	for _, m := range e.members {
		if ws := m.conn(); ws != nil {
			_ = ws.NetConn().Close()
		}
	}
	for _, m := range e.members {
		<-m.done
	}
}

// runDrain triggers the drain at DrainAt into the window.
func (e *engine) runDrain(ctx context.Context, start time.Time, out *DrainStats) {
	if realClock.SleepUntil(ctx, start.Add(e.cfg.DrainAt)) != nil {
		return
	}
	out.RanAtS = round3(time.Since(start).Seconds())
	switch {
	case e.opts.Drain != nil:
		if err := e.opts.Drain(ctx); err != nil {
			out.Error = err.Error()
		}
	case e.cfg.DrainCmd != "":
		cctx, cancel := context.WithTimeout(ctx, e.cfg.Duration)
		defer cancel()
		b, err := exec.CommandContext(cctx, "sh", "-c", e.cfg.DrainCmd).CombinedOutput()
		out.Output = string(bytes.TrimSpace(b))
		if len(out.Output) > 2000 {
			out.Output = out.Output[:2000]
		}
		if err != nil {
			out.Error = fmt.Sprintf("--drain-cmd %q: %v", e.cfg.DrainCmd, err)
			if first, _, _ := strings.Cut(out.Output, "\n"); first != "" {
				out.Error += ": " + first
			}
		}
	}
}
