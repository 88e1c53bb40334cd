package bench

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/gorilla/websocket"
)

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
		if string(env.Ref) == joinRef {
			// The member is not in its room: it cannot be checked, and
			// as a sender it would only collect not_joined errors.
			if m.tr == nil {
				e.errs.add("join_refused", 1)
				m.refuseOnce.Do(func() { close(m.refused) })
			} else {
				e.errs.add("rejoin_refused", 1)
				m.rejoinRefused = true
			}
			return
		}
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

// ---- sending ----

func (m *member) sendLoop(ctx context.Context, sched Schedule) {
	e := m.e
	room := e.rooms[m.room]
	var text, frame []byte
	errGone := errors.New("no connection")
	st, _ := sched.Run(ctx, realClock, func(k int, intended time.Time) error {
		if e.api != nil {
			text = AppendText(text[:0], e.id, m.sender, uint64(k), intended.UnixNano(), e.cfg.Size)
			m.publishVia(ctx, room, text)
			return nil
		}
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
