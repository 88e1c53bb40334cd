package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
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
	lat     *Recorder // live deliveries to healthy members
	slowLat *Recorder // deliveries to slow members

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

	errs       tally // client errors by kind
	closes     tally // unexpected closes by code
	status     tally // refused handshakes by HTTP status
	errorCodes tally // chatgate error envelopes by code

	sendLimit atomic.Uint64 // math.Float64bits of welcome.limits.send_per_sec, first seen

	reconnect    bool
	ending       atomic.Bool
	stallAt      atomic.Int64 // unix ns at which slow members stop reading; 0 never
	resume       chan struct{}
	resumeOnce   sync.Once
	sendDeadline time.Time // senders give up waiting for a connection then
}

// member is one connection of the traffic scenarios.
type member struct {
	e      *engine
	idx    int
	name   string
	room   int
	sender int // global sender id; -1 for a listener
	slow   bool
	src    net.IP
	url    int

	mu   sync.Mutex // guards ws, up, gone
	ws   *websocket.Conn
	up   chan struct{} // closed while ws is set (or once gone)
	gone bool          // no connection will come any more

	joined     chan struct{} // closed at the first joined (raw: the probe)
	joinedOnce sync.Once
	done       chan struct{} // closed when the member's goroutines are over

	// owned by the member's session goroutine (its reader)
	tr        *tracker         // chatgate: the room's stream
	rawTr     map[int]*tracker // raw: by sender id
	buf       bytes.Buffer
	lats      []time.Duration
	env       envelope
	rejoin    bool      // the next joined answers a join with since
	nextStall time.Time // slow members: when to stall again

	fresh   atomic.Int64 // new positions received
	nSent   atomic.Int64
	nAcked  atomic.Int64
	nReject atomic.Int64

	// results, written by the session goroutine before done is closed
	connected    bool
	lost         bool // disconnected for good before the end
	resumeFailed bool
	lastClose    int
	rejoins      int64
	recovered    int64
	unrecovered  int64
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
			up: make(chan struct{}), joined: make(chan struct{}), done: make(chan struct{})}
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

// finishUnstarted closes done for a member that never got a session.
func (m *member) finishUnstarted() {
	select {
	case <-m.done:
	default:
		if !m.connected {
			m.markGone()
			close(m.done)
		}
	}
}

// start dials and joins; on success the member's session goroutine runs
// until the end.
func (m *member) start(ctx context.Context, intended time.Time) {
	e := m.e
	e.attempted.Add(1)
	ws, status, err := dial(ctx, withName(e.cfg.URLs[m.url], m.name), e.dialOpts(m))
	if err == nil {
		e.recordConnect(intended, time.Now())
		err = m.hello(ws, nil)
		if err != nil {
			ws.Close()
		}
	}
	if err != nil {
		e.errs.add("connect_"+errKind(err, status), 1)
		if status != 0 {
			e.status.add(strconv.Itoa(status), 1)
		}
		return
	}
	e.established.Add(1)
	m.connected = true
	e.up.Add(1)
	m.setConn(ws)
	go m.session(ctx, ws)
	if e.cfg.Proto == ProtoChatgate {
		t := time.NewTimer(e.cfg.HandshakeTimeout)
		defer t.Stop()
		select {
		case <-m.joined:
		case <-t.C:
			e.errs.add("join_timeout", 1)
		case <-ctx.Done():
		}
	}
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

// hello reads chatgate's welcome and asks to join the member's room, with
// since when resuming. For raw there is nothing to say.
func (m *member) hello(ws *websocket.Conn, since *uint64) error {
	e := m.e
	if e.cfg.Proto == ProtoRaw {
		return nil
	}
	_ = ws.SetReadDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
	_, data, err := ws.ReadMessage()
	if err != nil {
		return err
	}
	first, _, _ := bytes.Cut(data, []byte{'\n'})
	var env envelope
	if err := parseEnvelope(first, &env); err != nil || string(env.Type) != "welcome" {
		return fmt.Errorf("first frame is not a welcome: %.100q", data)
	}
	if env.SendPerSec > 0 {
		e.sendLimit.CompareAndSwap(0, math.Float64bits(env.SendPerSec))
	}
	_ = ws.SetReadDeadline(time.Time{})
	m.rejoin = since != nil
	_ = ws.SetWriteDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
	return ws.WriteMessage(websocket.TextMessage, appendJoin(nil, e.rooms[m.room], since))
}

func (m *member) setConn(ws *websocket.Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ws != nil {
		if m.ws == nil && !m.gone {
			close(m.up)
		}
		m.ws = ws
		return
	}
	if m.ws != nil && !m.gone {
		m.up = make(chan struct{})
	}
	m.ws = nil
}

// markGone tells waiting senders that no connection will come.
func (m *member) markGone() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone {
		return
	}
	m.gone = true
	if m.ws == nil {
		close(m.up)
	}
}

func (m *member) conn() *websocket.Conn {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ws
}

// waitConn returns the member's connection, waiting through a reconnect,
// or nil when there is none by deadline.
func (m *member) waitConn(ctx context.Context, deadline time.Time) *websocket.Conn {
	for {
		m.mu.Lock()
		ws, up, gone := m.ws, m.up, m.gone
		m.mu.Unlock()
		if ws != nil {
			return ws
		}
		if gone {
			return nil
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-up:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
			return nil
		}
	}
}

// ---- the session: reading, and reconnecting when the scenario does ----

func (m *member) session(ctx context.Context, ws *websocket.Conn) {
	e := m.e
	defer close(m.done)
	defer m.markGone()
	for {
		ci := m.readLoop(ws)
		m.setConn(nil)
		e.up.Add(-1)
		_ = ws.NetConn().Close()
		if e.ending.Load() || ctx.Err() != nil {
			return
		}
		m.lastClose = ci.code
		e.closes.add(strconv.Itoa(ci.code), 1)
		if !e.reconnect || !retryable(ci.code) {
			m.lost = true
			return
		}
		ws = m.reconnectAfter(ctx, ci)
		if ws == nil {
			if !e.ending.Load() {
				m.lost, m.resumeFailed = true, true
			}
			return
		}
	}
}

// retryable says whether a client should come back after this close code.
func retryable(code int) bool {
	switch code {
	case 1003, 1007, 1008, 1009:
		return false
	}
	return true
}

const maxReconnectAttempts = 10

// reconnectAfter waits as the close asked (retry_ms, else backoff with
// jitter), reconnects to the next URL and rejoins with since.
func (m *member) reconnectAfter(ctx context.Context, ci closeInfo) *websocket.Conn {
	e := m.e
	wait := time.Duration(ci.retryMs) * time.Millisecond
	if wait > 0 {
		wait += time.Duration(rand.Int64N(int64(wait)/10 + 1))
	} else {
		wait = backoff(0)
	}
	for attempt := 0; attempt < maxReconnectAttempts; attempt++ {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		if e.ending.Load() {
			return nil
		}
		m.url = (m.url + 1) % len(e.cfg.URLs)
		ws, status, err := dial(ctx, withName(e.cfg.URLs[m.url], m.name), e.dialOpts(m))
		if err == nil {
			var since *uint64
			if m.tr != nil {
				h := max(m.tr.highest.Load(), m.tr.base)
				since = &h
			}
			if err = m.hello(ws, since); err != nil {
				ws.Close()
			}
		}
		if err == nil {
			e.reconnects.Add(1)
			e.up.Add(1)
			m.setConn(ws)
			return ws
		}
		e.reconnFail.Add(1)
		e.errs.add("reconnect_"+errKind(err, status), 1)
		wait = backoff(attempt + 1)
	}
	return nil
}

// backoff is exponential from 100 ms, capped at 5 s, with full jitter.
func backoff(attempt int) time.Duration {
	ceil := 100 * time.Millisecond << min(attempt, 6)
	ceil = min(ceil, 5*time.Second)
	return time.Duration(rand.Int64N(int64(ceil))) + time.Millisecond
}

// readLoop reads frames until the connection ends.
func (m *member) readLoop(ws *websocket.Conn) closeInfo {
	_ = ws.SetReadDeadline(time.Time{})
	for {
		if m.slow {
			m.throttle()
		}
		_, r, err := ws.NextReader()
		if err != nil {
			return classifyClose(err)
		}
		m.buf.Reset()
		if _, err := m.buf.ReadFrom(r); err != nil {
			return classifyClose(err)
		}
		m.handleFrame(m.buf.Bytes(), time.Now())
	}
}

// throttle makes a slow member slow: from stallAt until the window is over
// it stops reading for SlowStall at a time, reading freely for
// slowReadPhase in between; with SlowStall 0 it stops until the window is
// over.
func (m *member) throttle() {
	e := m.e
	at := e.stallAt.Load()
	if at == 0 || time.Now().UnixNano() < at {
		return
	}
	select {
	case <-e.resume:
		return
	default:
	}
	if e.cfg.SlowStall <= 0 {
		<-e.resume
		return
	}
	if time.Now().Before(m.nextStall) {
		return
	}
	t := time.NewTimer(e.cfg.SlowStall)
	select {
	case <-t.C:
	case <-e.resume:
		t.Stop()
	}
	m.nextStall = time.Now().Add(slowReadPhase)
}

// slowMSS is the TCP segment size slow members announce.
const slowMSS = 1200

// slowReadPhase is how long a slow member reads between stalls.
const slowReadPhase = 500 * time.Millisecond

func (m *member) handleFrame(data []byte, now time.Time) {
	e := m.e
	nowNs := now.UnixNano()
	m.lats = m.lats[:0]
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if e.cfg.Proto == ProtoRaw {
			m.handleRaw(line, nowNs)
		} else {
			m.handleEnvelope(line, nowNs)
		}
	}
	if n := len(m.lats); n > 0 {
		if m.slow {
			e.slowLat.RecordBatch(m.idx, m.lats)
			e.slowDeliv.Add(int64(n))
		} else {
			e.lat.RecordBatch(m.idx, m.lats)
			e.deliveries.Add(int64(n))
		}
	}
}

func (m *member) handleEnvelope(line []byte, nowNs int64) {
	e := m.e
	env := &m.env
	if err := parseEnvelope(line, env); err != nil {
		e.errs.add("bad_envelope", 1)
		return
	}
	switch string(env.Type) {
	case "message":
		p, ok := ParseText(env.Text)
		if !ok || string(p.Bench) != e.id || string(env.Room) != e.rooms[m.room] || !env.HasSeq {
			e.foreign.Add(1)
			return
		}
		if m.tr == nil {
			e.errs.add("message_before_joined", 1)
			return
		}
		fresh, replayed := m.tr.observe(env.Seq)
		if fresh {
			m.fresh.Add(1)
		}
		if !replayed {
			m.lats = append(m.lats, time.Duration(nowNs-p.Intended))
		}
	case "ack":
		if m.sender >= 0 && env.HasSeq {
			e.ledger.add(streamKey{m.room, -1}, env.Seq)
			e.acked.Add(1)
			m.nAcked.Add(1)
		}
	case "error":
		e.errorCodes.add(string(env.Code), 1)
		if len(env.Ref) > 0 && m.sender >= 0 {
			e.rejected.Add(1)
			m.nReject.Add(1)
		}
	case "joined":
		if string(env.Room) != e.rooms[m.room] {
			return
		}
		if m.tr == nil {
			m.tr = &tracker{base: env.Seq}
			m.tr.highest.Store(env.Seq)
			m.joinedOnce.Do(func() { close(m.joined) })
			return
		}
		if m.rejoin {
			m.rejoin = false
			m.rejoins++
			if env.Recovered == 1 {
				m.recovered++
			} else {
				m.unrecovered++
			}
			m.tr.rejoined(env.Seq)
		}
	case "presence":
		e.presence.Add(1)
	}
}

// probePrefix starts the raw barrier message: "<bench id>|p|".
func (e *engine) probePrefix() []byte { return []byte(e.id + "|p|") }

func (m *member) handleRaw(line []byte, nowNs int64) {
	e := m.e
	if bytes.HasPrefix(line, e.probePrefix()) {
		m.joinedOnce.Do(func() { close(m.joined) })
		return
	}
	p, ok := ParseText(line)
	if !ok || string(p.Bench) != e.id || p.Sender < 0 {
		e.foreign.Add(1)
		return
	}
	if m.rawTr == nil {
		m.rawTr = make(map[int]*tracker)
	}
	tr := m.rawTr[p.Sender]
	if tr == nil {
		tr = &tracker{}
		m.rawTr[p.Sender] = tr
	}
	if fresh, _ := tr.observe(p.Counter + 1); fresh {
		m.fresh.Add(1)
	}
	m.lats = append(m.lats, time.Duration(nowNs-p.Intended))
}

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
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
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

// ---- sending ----

func (m *member) sendLoop(ctx context.Context, sched Schedule) {
	e := m.e
	room := e.rooms[m.room]
	var text, frame []byte
	errGone := errors.New("no connection")
	st, _ := sched.Run(ctx, realClock, func(k int, intended time.Time) error {
		ws := m.waitConn(ctx, e.sendDeadline)
		if ws == nil {
			return errGone
		}
		text = AppendText(text[:0], e.id, m.sender, uint64(k), intended.UnixNano(), e.cfg.Size)
		out := text
		if e.cfg.Proto == ProtoChatgate {
			frame = appendSend(frame[:0], room, text, uint64(k))
			out = frame
		}
		_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := ws.WriteMessage(websocket.TextMessage, out); err != nil {
			e.writeFailed.Add(1)
			e.errs.add("write_"+errKind(err, 0), 1)
			_ = ws.NetConn().Close() // the session notices and, if it may, reconnects
			if !e.reconnect {
				return err
			}
			return nil
		}
		m.nSent.Add(1)
		e.sent.Add(1)
		if e.cfg.Proto == ProtoRaw {
			e.ledger.add(streamKey{m.room, m.sender}, uint64(k)+1)
		}
		return nil
	})
	for {
		cur := e.maxLag.Load()
		if int64(st.MaxLag) <= cur || e.maxLag.CompareAndSwap(cur, int64(st.MaxLag)) {
			break
		}
	}
	e.late.Add(int64(st.Late))
}

// ---- the end ----

// healthy says whether a member counts for loss and latency.
func (m *member) healthy() bool {
	if !m.connected || m.slow {
		return false
	}
	select {
	case <-m.joined:
	default:
		return false
	}
	return true
}

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

// settled reports whether every send is answered and every healthy member
// has every message known to exist.
func (e *engine) settled() bool {
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
		if wait <= 0 {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
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
			out.Error = err.Error()
		}
	}
}

// ---- the run ----

// runTraffic runs fanout, rooms, slow and drain, and churn's stable part
// (extra runs alongside the window when not nil).
func runTraffic(ctx context.Context, cfg *Config, opts *Options, id string, res *Result, extra func(ctx context.Context, e *engine, start, end time.Time)) error {
	e := newEngine(cfg, opts, id)
	res.Params.TargetDeliveriesPerS = round3(e.targetDeliveries())
	smp := newSampler(cfg)
	var before, connected serverSample
	if smp != nil {
		before = smp.sample(ctx)
	}
	prog := newProgress(opts, cfg, "connecting")
	defer prog.close()

	e.connectAll(ctx)
	defer func() {
		e.shutdown()
	}()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if cfg.Proto == ProtoRaw {
		e.probe(ctx)
	}
	if e.established.Load() == 0 {
		e.fillConnStats(res)
		res.Errors = e.errs.snapshot()
		return fmt.Errorf("no connection could be established (errors: %v)", e.errs.snapshot())
	}
	if lim := math.Float64frombits(e.sendLimit.Load()); lim > 0 && cfg.Rate > lim && cfg.Senders > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the server allows %g sends/s per connection (welcome.limits.send_per_sec) but --rate is %g: expect rate_limited errors; start the gateway with a higher --send-rate", lim, cfg.Rate))
	}
	if smp != nil {
		connected = smp.sample(ctx)
	}

	// The window.
	start := time.Now().Add(50 * time.Millisecond)
	end := start.Add(cfg.Duration)
	e.sendDeadline = end.Add(cfg.Settle)
	if cfg.Scenario == ScenarioSlow {
		e.stallAt.Store(start.Add(cfg.SlowAfter).UnixNano())
	}
	var startSample serverSample
	if smp != nil {
		startSample = smp.sample(ctx)
	}
	selfStart, selfStartAt := selfCPU(), time.Now()
	tl := newTimeline(e, smp, start, prog)
	tlDone := make(chan struct{})
	tlStop := make(chan struct{})
	go func() {
		defer close(tlDone)
		tl.run(ctx, tlStop)
	}()
	prog.start(cfg.Duration)

	var wg sync.WaitGroup
	interval := IntervalFor(cfg.Rate)
	nSenders := 0
	for _, m := range e.members {
		if m.sender >= 0 {
			nSenders++
		}
	}
	for _, m := range e.members {
		if m.sender < 0 || !m.connected || interval == 0 {
			continue
		}
		// Senders are spread over one interval so they do not fire together.
		offset := time.Duration(int64(interval) * int64(m.sender) / int64(max(nSenders, 1)))
		sched := Schedule{Start: start.Add(offset), Interval: interval, End: end, Count: cfg.Messages}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.sendLoop(ctx, sched)
		}()
	}
	var drain *DrainStats
	if cfg.Scenario == ScenarioDrain {
		drain = &DrainStats{Command: cfg.DrainCmd}
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.runDrain(ctx, start, drain)
		}()
	}
	if extra != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			extra(ctx, e, start, end)
		}()
	}
	wg.Wait()
	sendEnd := time.Now()
	if cfg.Messages == 0 && sendEnd.Before(end) {
		sendEnd = end
	}
	e.waitSettled(ctx)
	var endSample serverSample
	if smp != nil {
		endSample = smp.sample(ctx)
	}
	if secs := time.Since(selfStartAt).Seconds(); secs > 0 && selfStart >= 0 {
		res.ClientCPUCores = round3((selfCPU() - selfStart) / secs)
	}
	close(tlStop)
	<-tlDone
	e.resumeSlow()
	e.waitSlow(ctx)
	prog.finish()
	e.shutdown()

	window := sendEnd.Sub(start).Seconds()
	res.WindowS = round3(window)
	e.fillResult(res, window)
	res.Timeline = tl.points
	if drain != nil {
		drain.Reconnects = e.reconnects.Load()
		drain.ReconnectFailures = e.reconnFail.Load()
		for _, m := range e.members {
			if m.resumeFailed {
				drain.ResumeFailed++
			}
		}
		res.Drain = drain
	}
	if smp != nil {
		res.Server = serverStats(smp, before, connected, startSample, endSample, tl.peakRSS, e.established.Load(), e.deliveries.Load()+e.slowDeliv.Load(), false)
	}
	return nil
}

func (e *engine) fillConnStats(res *Result) {
	e.connMu.Lock()
	defer e.connMu.Unlock()
	res.Connections = ConnStats{
		Attempted:        e.attempted.Load(),
		Established:      e.established.Load(),
		Failed:           e.attempted.Load() - e.established.Load(),
		ConnectLatency:   e.connHist.Summary(),
		FailuresByStatus: e.status.snapshot(),
	}
	if secs := e.connLast.Sub(e.connFirst).Seconds(); secs > 0 {
		res.Connections.HandshakesPerS = round3(float64(e.established.Load()) / secs)
	}
}

// fillResult turns the engine's state into the result. Every member's
// goroutines are over.
func (e *engine) fillResult(res *Result, window float64) {
	e.fillConnStats(res)
	res.Messages = MsgStats{
		Sent:           e.sent.Load(),
		Acked:          e.acked.Load(),
		Rejected:       e.rejected.Load(),
		WriteFailed:    e.writeFailed.Load(),
		Deliveries:     e.deliveries.Load(),
		SenderMaxLagUs: e.maxLag.Load() / 1000,
		SendsLate:      e.late.Load(),
		ErrorCodes:     e.errorCodes.snapshot(),
		PresenceFrames: e.presence.Load(),
	}
	if window > 0 {
		res.Messages.DeliveriesPerS = round3(float64(res.Messages.Deliveries) / window)
		res.Messages.SentPerS = round3(float64(res.Messages.Sent) / window)
	}
	total := e.lat.Total()
	res.Latency = total.Summary()
	res.Histogram = total.Buckets()
	if total.Clamped() > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d latencies were above 10 minutes and recorded as 10 minutes", total.Clamped()))
	}

	// Everything any member saw exists.
	for _, m := range e.members {
		if m.tr != nil {
			e.ledger.union(streamKey{m.room, -1}, &m.tr.seen)
		}
		for s, tr := range m.rawTr {
			e.ledger.union(streamKey{m.room, s}, &tr.seen)
		}
	}
	c := Correctness{Foreign: e.foreign.Load()}
	if e.cfg.Proto == ProtoChatgate {
		c.Unconfirmed = max(0, e.sent.Load()-e.acked.Load()-e.rejected.Load())
	}
	var slow *SlowStats
	if e.cfg.Scenario == ScenarioSlow {
		slow = &SlowStats{CloseCodes: map[string]int64{}, Deliveries: e.slowDeliv.Load()}
		st := e.slowLat.Total().Summary()
		res.SlowLatency = &st
	}
	for _, m := range e.members {
		c.Rejoins += m.rejoins
		c.RecoveredJoins += m.recovered
		c.UnrecoveredJoins += m.unrecovered
		if m.slow && slow != nil {
			slow.Members++
			switch {
			case !m.connected:
				slow.CloseCodes["never_connected"]++
			case m.lost:
				slow.CloseCodes[strconv.Itoa(m.lastClose)]++
				if m.lastClose == 4008 {
					slow.Evicted++
				}
			default:
				slow.CloseCodes["open"]++
			}
		}
		if !m.healthy() || m.lost {
			c.MembersExcluded++
			continue
		}
		c.MembersChecked++
		streams := map[streamKey]*tracker{}
		if e.cfg.Proto == ProtoChatgate {
			streams[streamKey{m.room, -1}] = m.tr
		} else {
			for _, s := range e.senders[m.room] {
				streams[streamKey{m.room, s}] = m.rawTr[s]
			}
		}
		t := tallyMember(e.ledger, streams)
		c.Expected += t.expected
		c.Received += t.received
		c.MissingAtEnd += t.tail
		c.Duplicated += t.dup
		c.OutOfOrder += t.ooo
		c.HealedByReplay += t.healed
	}
	c.Lost = c.Expected - c.Received
	if c.Expected > 0 {
		c.LossRatio = float64(c.Lost) / float64(c.Expected)
	}
	res.Correctness = c
	if c.MissingAtEnd > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d expected deliveries had not arrived when --settle (%v) ran out, after the last one each member got: the server or this client fell behind (see sender lag and bench cpu); they count as lost", c.MissingAtEnd, e.cfg.Settle))
	}
	res.Slow = slow
	res.CloseCodes = e.closes.snapshot()
	res.Errors = e.errs.snapshot()
}
