package bench

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// runConnect is the connection storm: Conns connections opened on an
// open-loop schedule of ConnectRate per second, each timed from its
// intended start to the server's 101 (and, for chatgate, checked to get a
// welcome). The connections then stay open and idle for Hold, when the
// server's memory is sampled, and are closed.
func runConnect(ctx context.Context, cfg *Config, opts *Options, id string, res *Result) error {
	smp := newSampler(cfg)
	var before, afterStorm, afterHold serverSample
	if smp != nil {
		before = smp.sample(ctx)
	}
	var (
		mu        sync.Mutex
		hist      = NewHistogram()
		lastOK    time.Time
		status    tally
		refusals  tally
		errs      tally
		closes    tally
		conns     = make([]*websocket.Conn, cfg.Conns)
		attempted atomic.Int64
		okCount   atomic.Int64
		ending    atomic.Bool
		dials     sync.WaitGroup
		readers   sync.WaitGroup
	)
	sem := make(chan struct{}, cfg.DialConcurrency)
	start := time.Now().Add(20 * time.Millisecond)
	sched := Schedule{Start: start, Interval: IntervalFor(cfg.ConnectRate), Count: cfg.Conns}

	prog := newProgress(opts, cfg, "connecting")
	prog.start(time.Duration(float64(cfg.Conns) / cfg.ConnectRate * float64(time.Second)))
	progStop, progDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(progDone)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-progStop:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				prog.update(now.Sub(start), fmt.Sprintf("connections %d/%d, %d failed", okCount.Load(), cfg.Conns, attempted.Load()-okCount.Load()))
			}
		}
	}()

	_, runErr := sched.Run(ctx, realClock, func(k int, intended time.Time) error {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		attempted.Add(1)
		dials.Add(1)
		go func() {
			defer dials.Done()
			o := dialOpts{proto: cfg.Proto, timeout: cfg.HandshakeTimeout, creds: cfg.creds, conn: k}
			if len(cfg.SourceIPs) > 0 {
				o.src = cfg.SourceIPs[k%len(cfg.SourceIPs)]
			}
			ws, st, err := dial(ctx, cfg.URLs[k%len(cfg.URLs)], o)
			at := time.Now()
			if err == nil && cfg.Proto == ProtoChatgate {
				if err = readWelcome(ws, cfg.HandshakeTimeout); err != nil {
					ws.Close()
				}
			}
			<-sem
			if err != nil {
				errs.add("connect_"+errKind(err, st), 1)
				if st != 0 {
					status.add(strconv.Itoa(st), 1)
				}
				refusals.add(refusal(err), 1)
				return
			}
			okCount.Add(1)
			mu.Lock()
			hist.Record(at.Sub(intended))
			if at.After(lastOK) {
				lastOK = at
			}
			mu.Unlock()
			conns[k] = ws
			readers.Add(1)
			go func() {
				defer readers.Done()
				for {
					if _, _, err := ws.NextReader(); err != nil {
						if !ending.Load() {
							closes.add(strconv.Itoa(classifyClose(err).code), 1)
						}
						return
					}
				}
			}()
		}()
		return nil
	})
	dials.Wait()
	close(progStop)
	<-progDone
	prog.finish()
	if smp != nil {
		afterStorm = smp.sample(ctx)
	}
	res.WindowS = round3(lastOK.Sub(start).Seconds())
	if ctx.Err() == nil && cfg.Hold > 0 {
		_ = realClock.SleepUntil(ctx, time.Now().Add(cfg.Hold))
	}
	if smp != nil {
		afterHold = smp.sample(ctx)
	}

	// Close: a close frame to each, then the sockets of any that linger.
	ending.Store(true)
	for _, ws := range conns {
		if ws != nil {
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		}
	}
	done := make(chan struct{})
	go func() {
		readers.Wait()
		close(done)
	}()
	t := time.NewTimer(3 * time.Second)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	for _, ws := range conns {
		if ws != nil {
			_ = ws.NetConn().Close()
		}
	}
	<-done

	est := okCount.Load()
	res.Connections = ConnStats{
		Attempted:        attempted.Load(),
		Established:      est,
		Failed:           attempted.Load() - est,
		ConnectLatency:   hist.Summary(),
		FailuresByStatus: status.snapshot(),
		FailuresByReason: refusals.snapshot(),
	}
	if res.WindowS > 0 {
		res.Connections.HandshakesPerS = round3(float64(est) / res.WindowS)
	}
	res.Histogram = hist.Buckets()
	res.Errors = errs.snapshot()
	res.CloseCodes = closes.snapshot()
	if smp != nil {
		res.Server = serverStats(smp, before, afterHold, before, afterStorm, afterHold.rss, est, 0, true)
	}
	if runErr != nil && ctx.Err() == nil {
		return runErr
	}
	return ctx.Err()
}

// readWelcome reads chatgate's first frame and checks it is a welcome.
func readWelcome(ws *websocket.Conn, timeout time.Duration) error {
	_ = ws.SetReadDeadline(time.Now().Add(timeout))
	_, data, err := ws.ReadMessage()
	if err != nil {
		return err
	}
	_ = ws.SetReadDeadline(time.Time{})
	first, _, _ := bytes.Cut(data, []byte{'\n'})
	var env envelope
	if err := parseEnvelope(first, &env); err != nil || string(env.Type) != "welcome" {
		return fmt.Errorf("first frame is not a welcome: %.100q", data)
	}
	return nil
}
