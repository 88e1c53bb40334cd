package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

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

	// The connection's ends, for sockQueues; set before the session
	// starts (slow members only).
	serverAddr, localAddr netip.AddrPort

	mu   sync.Mutex // guards ws, up, gone
	ws   *websocket.Conn
	up   chan struct{} // closed while ws is set (or once gone)
	gone bool          // no connection will come any more

	joined     chan struct{} // closed at the first joined (raw: the probe)
	joinedOnce sync.Once
	refused    chan struct{} // closed when the gateway refuses the first join
	refuseOnce sync.Once
	done       chan struct{} // closed when the member's goroutines are over

	// owned by the member's session goroutine (its reader)
	tr            *tracker         // chatgate: the room's stream
	rawTr         map[int]*tracker // raw: by sender id
	buf           bytes.Buffer
	lats          []time.Duration
	env           envelope
	rejoin        bool      // the next joined answers a join with since
	rejoinRefused bool      // the gateway refused a join with since
	nextStall     time.Time // slow members: when to stall again

	reconnecting atomic.Bool // between a close and the rejoin (the settle wait polls it)

	fresh   atomic.Int64 // new positions received
	nSent   atomic.Int64
	nAcked  atomic.Int64
	nReject atomic.Int64

	// results, written by the session goroutine before done is closed
	connected    bool
	lost         bool // disconnected for good before the end
	resumeFailed bool // could not reconnect, or was still trying at the end
	noReplica    bool // resumeFailed with a single URL: nowhere else to go
	lastClose    int
	rejoins      int64
	recovered    int64
	unrecovered  int64
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
		e.refusals.add(refusal(err), 1)
		return
	}
	e.established.Add(1)
	m.connected = true
	if m.slow {
		m.serverAddr, m.localAddr = connAddrs(ws.NetConn())
	}
	e.up.Add(1)
	m.setConn(ws)
	go m.session(ctx, ws)
	if e.cfg.Proto == ProtoChatgate {
		t := time.NewTimer(e.cfg.HandshakeTimeout)
		defer t.Stop()
		select {
		case <-m.joined:
		case <-m.refused: // counted as join_refused by the reader
		case <-t.C:
			e.errs.add("join_timeout", 1)
		case <-ctx.Done():
		}
	}
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
	defer m.reconnecting.Store(false)
	for {
		ci := m.readLoop(ws)
		// Marked before the connection is gone, so the settle wait never
		// sees this member neither connected nor reconnecting.
		m.reconnecting.Store(e.reconnect && retryable(ci.code))
		m.setConn(nil)
		e.up.Add(-1)
		_ = ws.NetConn().Close()
		if e.ending.Load() || ctx.Err() != nil {
			return
		}
		m.lastClose = ci.code
		e.closes.add(strconv.Itoa(ci.code), 1)
		e.noteClose(ci.code)
		if !e.reconnect || !retryable(ci.code) {
			m.lost = true
			return
		}
		ws = m.reconnectAfter(ctx, ci)
		m.reconnecting.Store(false)
		if ws == nil {
			// Gave up, or the run ended first: either way this member
			// missed messages it cannot be checked for.
			m.lost, m.resumeFailed = true, true
			m.noReplica = len(e.cfg.URLs) == 1
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
		if realClock.SleepUntil(ctx, time.Now().Add(wait)) != nil {
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

// exclusion says why a member is not checked for loss, or "" when it is.
// Its results must be final (the member's goroutines are over).
func (m *member) exclusion() string {
	switch {
	case m.slow:
		return "slow"
	case !m.connected:
		return "not_connected"
	case !m.healthy() || m.rejoinRefused:
		return "not_joined"
	case m.noReplica:
		return "no_replica"
	case m.resumeFailed:
		return "resume_failed"
	case m.lost:
		return "disconnected"
	}
	return ""
}

// healthy says whether a member counts for loss and latency.
func (m *member) healthy() bool { return m.connected && !m.slow && m.isJoined() }

// isJoined says whether the member got into its room (raw: saw the probe).
func (m *member) isJoined() bool {
	select {
	case <-m.joined:
		return true
	default:
		return false
	}
}
