package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/internal/ctxsleep"
)

// ensureLoop checks, creates or updates the stream after every (re)connect
// (and when the probe finds it gone), retrying with backoff, then announces
// this replica and resyncs presence.
func (bp *Backplane) ensureLoop() {
	defer bp.wg.Done()
	for {
		select {
		case <-bp.quit:
			return
		case <-bp.ensure:
		}
		for attempt := 0; ; attempt++ {
			if bp.closed.Load() {
				return
			}
			if bp.nc.IsConnected() {
				err := bp.ensureStream()
				if err == nil {
					// The server API's bans: chat does not need them, so a
					// failure here leaves the backplane up (healthLoop
					// tries again while the bucket is missing).
					if err := bp.ensureBansNow(); err != nil {
						bp.log.Warn("cannot create the bans bucket; the server API's bans are unavailable until it can", "err", err)
					}
					break
				}
				bp.log.Warn("cannot create or update the stream; retrying", "err", err, "stream", bp.cfg.Stream)
			}
			if !bp.sleep(backoff(attempt, 100*time.Millisecond, 5*time.Second)) {
				return
			}
		}
		bp.announce(true)
		bp.snapshotAll()
	}
}

// ensureStream makes sure the stream exists with this replica's settings
// and checks it against the one this replica knew (checkStream); on
// success the backplane is up on the current connection.
func (bp *Backplane) ensureStream() error {
	gen := bp.connGen()
	high := bp.highSeq.Load() // before any request: see checkStream
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	scfg := bp.streamConfig()
	var s jetstream.Stream
	for s == nil {
		existing, err := bp.js.Stream(ctx, bp.cfg.Stream)
		switch {
		case err == nil:
			// The first seq is the stream's for life: an update must not
			// move it (nats-server would purge below it on its next start).
			// Nor can an update change the storage: keep the stream's.
			cur := existing.CachedInfo().Config
			scfg.FirstSeq = cur.FirstSeq
			if cur.Storage != scfg.Storage {
				bp.log.Warn("the stream's storage cannot be changed; keeping it", "stream", bp.cfg.Stream,
					"storage", cur.Storage.String(), "configured", scfg.Storage.String())
				scfg.Storage = cur.Storage
			}
			// Live delivery needs the republish and direct gets that this
			// configuration sets: a stream that refuses it cannot serve.
			if s, err = bp.js.UpdateStream(ctx, scfg); err != nil {
				return fmt.Errorf("updating the stream: %w", err)
			}
		case errors.Is(err, jetstream.ErrStreamNotFound):
			// Numbered from the clock, above every seq this replica saw:
			// a stream made again after a loss numbers above the lost one.
			scfg.FirstSeq = max(broker.TimeSeqBase(time.Now()), high+1)
			s, err = bp.js.CreateStream(ctx, scfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				s, err = nil, nil // another replica made it first: look again
			} else if err != nil {
				return err
			} else {
				bp.log.Info("created the stream", "stream", bp.cfg.Stream, "first_seq", scfg.FirstSeq)
			}
		default:
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	bp.answer()
	bp.checkStream(s.CachedInfo(), high)
	bp.stream.Store(&s)
	// Live messages received before now may come from a stream this
	// replica no longer serves; the dispatchers drop them while checked is
	// 0. Let them finish with those before declaring the stream checked.
	if !bp.barrier() {
		return errUnavailable
	}
	if bp.nc.IsConnected() && bp.connGen() == gen {
		bp.checked.Store(gen + 1)
	}
	// Nothing published while this replica was not checked reached its
	// rooms: each reads it from the stream.
	bp.resyncAll()
	return nil
}

func (bp *Backplane) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              bp.cfg.Stream,
		Description:       "chatgate room messages, one subject per room",
		Subjects:          []string{streamSubjects},
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: int64(bp.cfg.Rooms.History),
		MaxAge:            bp.cfg.MaxAge,
		Storage:           bp.cfg.Storage,
		Replicas:          bp.cfg.Replicas,
		Discard:           jetstream.DiscardOld,
		MaxConsumers:      maxConsumers,
		// Live delivery: every stored message, in stream order, on core
		// NATS to chatgate.live.<room>, with Nats-Sequence and
		// Nats-Last-Sequence (the room's previous seq).
		RePublish: &jetstream.RePublish{Source: streamSubjects, Destination: livePrefix + ">"},
		// Repairs and replays read a room's messages with Direct Gets.
		AllowDirect: true,
	}
}

// liveConfigured reports whether a stream configuration has what live
// delivery and repairs need (see streamConfig).
func liveConfigured(c jetstream.StreamConfig) bool {
	return c.AllowDirect && c.RePublish != nil && c.RePublish.Destination == livePrefix+">" &&
		(c.RePublish.Source == "" || c.RePublish.Source == streamSubjects) && !c.RePublish.HeadersOnly
}

// checkStream compares the stream's state (read after high was taken) with
// the stream this replica knew. Another creation time means the stream was
// made again; a last seq below high (a seq this replica delivered from it)
// means it went back, as a stream restored from an older backup would. In
// both cases the messages of the old stream are lost: a new epoch starts
// and every room moves to the new stream.
func (bp *Backplane) checkStream(info *jetstream.StreamInfo, high uint64) {
	bp.streamMu.Lock()
	defer bp.streamMu.Unlock()
	prev := bp.created
	bp.created = info.Created
	var why string
	switch {
	case prev.IsZero():
		return // the first stream this replica sees
	case !info.Created.Equal(prev):
		why = "created again"
	case info.State.LastSeq < high:
		why = "its sequence went back"
	default:
		return
	}
	// The new stream's messages start after pos.
	pos := info.State.LastSeq
	if info.State.FirstSeq > 0 {
		pos = info.State.FirstSeq - 1
	}
	// A stream numbered above everything this replica saw (one that chatgate
	// made again) cannot have delivered positions of the old stream above
	// pos: rooms already past pos are on the new stream, and stay.
	above := pos >= high
	ep := bp.epoch.Add(1)
	bp.highSeq.Store(info.State.LastSeq)
	rooms, gaps, unacked := 0, 0, 0
	for _, r := range bp.allRooms() {
		if gap, n, ok := r.moveTo(ep, pos, above); ok {
			rooms++
			unacked += n
			if gap {
				gaps++
			}
		}
	}
	bp.log.Error(msgStreamLost, "stream", bp.cfg.Stream, "why", why, "created", info.Created, "first_seq", info.State.FirstSeq,
		"last_seq", info.State.LastSeq, "highest_seq_seen", high, "rooms", rooms, "rooms_with_gap", gaps, "unacked_sends", unacked)
}

// healthLoop asks JetStream for the stream's state every third of
// HealthTimeout. Each answer keeps the backplane up (Health) and is checked
// against the stream this replica knows (checkStream); a stream gone
// missing is made again, and one updated without live delivery's settings
// gets them back. It logs every change of Health.
func (bp *Backplane) healthLoop() {
	defer bp.wg.Done()
	tick := time.NewTicker(bp.cfg.HealthTimeout / 3)
	defer tick.Stop()
	var last error = ErrDown
	for {
		select {
		case <-bp.quit:
			return
		case <-tick.C:
		}
		if h := bp.Health(); h != last {
			if h == nil {
				bp.log.Info("backplane up")
			} else {
				bp.log.Warn(h.Error()+"; sends and new rooms get unavailable until it is back", "health_timeout", bp.cfg.HealthTimeout.String())
			}
			last = h
		}
		gen := bp.connGen()
		if !bp.nc.IsConnected() || bp.checked.Load() != gen+1 {
			continue // ensureLoop's turn
		}
		bp.refreshBans()
		high := bp.highSeq.Load()
		ctx, cancel := context.WithTimeout(context.Background(), bp.cfg.HealthTimeout)
		s, err := bp.js.Stream(ctx, bp.cfg.Stream)
		cancel()
		switch {
		case err == nil:
			bp.answer()
			bp.checkStream(s.CachedInfo(), high)
			if !liveConfigured(s.CachedInfo().Config) {
				// Someone (a replica of an earlier version, say) updated
				// the stream without the republish or direct gets that live
				// delivery needs: put them back, and repair every room.
				bp.log.Error("the stream lost its republish or direct get setting; restoring it", "stream", bp.cfg.Stream)
				bp.checked.Store(0)
				bp.poke()
			}
		case errors.Is(err, jetstream.ErrStreamNotFound):
			bp.answer()
			bp.log.Error("the stream is gone; making it again", "stream", bp.cfg.Stream)
			bp.checked.Store(0)
			bp.poke()
		default:
			// No answer in time: Health reports not responding once the
			// last answer is HealthTimeout old.
			bp.log.Debug("stream probe failed", "err", err)
		}
	}
}

// sleep waits d or until Close; it reports false on Close.
func (bp *Backplane) sleep(d time.Duration) bool { return ctxsleep.Sleep(bp.life, d) }

// backoff is an exponential delay with full jitter between base and max.
func backoff(attempt int, base, maxD time.Duration) time.Duration {
	d := base << min(attempt, 16)
	if d > maxD || d <= 0 {
		d = maxD
	}
	return d/2 + rand.N(d/2+1)
}

func (bp *Backplane) streamHandle() jetstream.Stream {
	if p := bp.stream.Load(); p != nil {
		return *p
	}
	return nil
}

// standing reads where subject's messages stand in s, as a first join of
// the room on this replica finds them: last is the subject's last message
// (0 when it has none), and pos is last or, when the subject has no
// message, the stream's last seq, so that a since from then on is a
// position the stream has handed out. With no message the floor becomes
// the stream's first seq - 1 (when the stream reports one); otherwise, and
// on an error, the given floor is returned as it is.
func standing(ctx context.Context, s jetstream.Stream, subject string, floor uint64) (last, pos, newFloor uint64, err error) {
	msg, err := s.GetLastMsgForSubject(ctx, subject)
	if err == nil {
		return msg.Sequence, msg.Sequence, floor, nil
	}
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, 0, floor, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, floor, err
	}
	if info.State.FirstSeq > 0 {
		floor = info.State.FirstSeq - 1
	}
	return 0, info.State.LastSeq, floor, nil
}
