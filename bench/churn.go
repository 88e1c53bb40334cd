package bench

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// churnSlots is how many churning connections may be open at once: the
// arrivals of 1.5 hold periods, plus slack.
func churnSlots(cfg *Config) int {
	return int(cfg.ConnectRate*cfg.ChurnHold.Seconds()*1.5) + 16
}

// runChurn runs the stable members (a rooms-like load, checked for loss)
// while connections arrive at ConnectRate, join a room, stay ChurnHold and
// leave: the presence cost shows in the stable members' presence frames
// and latency.
func runChurn(ctx context.Context, cfg *Config, opts *Options, id string, res *Result) error {
	var (
		mu       sync.Mutex
		hist     = NewHistogram()
		arrivals atomic.Int64
		joined   atomic.Int64
		failed   atomic.Int64
	)
	extra := func(ctx context.Context, e *engine, start, end time.Time) {
		sem := make(chan struct{}, churnSlots(cfg))
		var wg sync.WaitGroup
		sched := Schedule{Start: start, Interval: IntervalFor(cfg.ConnectRate), End: end}
		_, _ = sched.Run(ctx, realClock, func(k int, intended time.Time) error {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			arrivals.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				at, kind := churnOne(ctx, e, k)
				if kind != "" {
					failed.Add(1)
					e.errs.add("churn_"+kind, 1)
					return
				}
				joined.Add(1)
				mu.Lock()
				hist.Record(at.Sub(intended))
				mu.Unlock()
			}()
			return nil
		})
		wg.Wait()
	}
	err := runTraffic(ctx, cfg, opts, id, res, extra)
	res.Churn = &ChurnStats{
		Arrivals:    arrivals.Load(),
		Joined:      joined.Load(),
		Failed:      failed.Load(),
		JoinLatency: hist.Summary(),
	}
	if res.WindowS > 0 {
		res.Churn.PresenceFramesPerS = round3(float64(res.Messages.PresenceFrames) / res.WindowS)
	}
	return err
}

// churnOne is one arrival: connect, join (chatgate), stay, leave. It returns
// when the join was confirmed (raw: when the upgrade completed), or the kind
// of error that stopped it.
func churnOne(ctx context.Context, e *engine, k int) (time.Time, string) {
	cfg := e.cfg
	// Arrivals are users after the stable members.
	o := dialOpts{proto: cfg.Proto, timeout: cfg.HandshakeTimeout, creds: cfg.creds, conn: cfg.Conns + k}
	if len(cfg.SourceIPs) > 0 {
		o.src = cfg.SourceIPs[(k+cfg.Conns)%len(cfg.SourceIPs)]
	}
	ws, st, err := dial(ctx, cfg.URLs[k%len(cfg.URLs)], o)
	if err != nil {
		if st != 0 {
			e.status.add(strconv.Itoa(st), 1)
		}
		e.refusals.add(refusal(err), 1)
		return time.Time{}, errKind(err, st)
	}
	defer ws.Close()
	at := time.Now()
	if cfg.Proto == ProtoChatgate {
		room := e.rooms[k%len(e.rooms)]
		if err := readWelcome(ws, cfg.HandshakeTimeout); err != nil {
			return time.Time{}, "welcome_" + errKind(err, 0)
		}
		_ = ws.SetWriteDeadline(time.Now().Add(cfg.HandshakeTimeout))
		if err := ws.WriteMessage(websocket.TextMessage, appendJoin(nil, room, nil)); err != nil {
			return time.Time{}, "join_" + errKind(err, 0)
		}
		at, err = waitJoined(ws, room, time.Now().Add(cfg.HandshakeTimeout))
		if err != nil {
			return time.Time{}, "join_" + errKind(err, 0)
		}
	}
	// Stay, discarding what arrives, then leave with a close frame.
	_ = ws.SetReadDeadline(time.Now().Add(cfg.ChurnHold))
	for {
		if _, _, err := ws.NextReader(); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return at, "" // the server closed it first; it did join
			}
			break
		}
		if ctx.Err() != nil {
			break
		}
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return at, ""
}

// waitJoined reads until the joined of room and returns when it came.
func waitJoined(ws *websocket.Conn, room string, deadline time.Time) (time.Time, error) {
	_ = ws.SetReadDeadline(deadline)
	var env envelope
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return time.Time{}, err
		}
		for len(data) > 0 {
			var line []byte
			line, data, _ = bytes.Cut(data, []byte{'\n'})
			if parseEnvelope(line, &env) == nil && string(env.Type) == "joined" && string(env.Room) == room {
				return time.Now(), nil
			}
			if string(env.Type) == "error" {
				return time.Time{}, errors.New("join refused: " + string(env.Code))
			}
		}
	}
}
