package cluster

import (
	"errors"
	"hash/fnv"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Live delivery: the subscriptions of the rooms this replica serves, and
// the dispatchers that hand what they receive to the rooms in order.
//
// Every room's live subscription delivers into one of a few shared
// channels, picked by the room's name, and one goroutine drains each
// channel. So a room's messages keep the order NATS delivered them in,
// rooms on different channels proceed in parallel, and a served room costs
// the replica one subscription and no goroutine. A full channel makes the
// NATS client drop the message and report a slow consumer on the room's
// subscription; the room then repairs from the stream (repair.go).

const (
	// liveQueue is how many messages each channel buffers.
	liveQueue = 16384
	// maxDispatchers bounds the channels (one per core up to this).
	maxDispatchers = 8
)

// dispatchers owns the channels and the barriers sent through them.
type dispatchers struct {
	chans    []chan *nats.Msg // static after init
	presence chan *nats.Msg   // static after init: presence messages for presenceWorker

	mu       sync.Mutex
	barriers map[*nats.Msg]*sync.WaitGroup // guarded by mu
}

func (d *dispatchers) init(queue int) {
	n := min(max(runtime.GOMAXPROCS(0), 1), maxDispatchers)
	d.chans = make([]chan *nats.Msg, n)
	for i := range d.chans {
		d.chans[i] = make(chan *nats.Msg, queue)
	}
	d.presence = make(chan *nats.Msg, queue)
	d.barriers = make(map[*nats.Msg]*sync.WaitGroup)
}

// of is the channel that carries room name's messages.
func (d *dispatchers) of(name string) chan *nats.Msg {
	return d.chans[fnv32(name)%uint32(len(d.chans))]
}

func fnv32(s string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return h.Sum32()
}

// startDispatchers runs one dispatcher per channel, and the presence
// worker, until Close.
func (bp *Backplane) startDispatchers() {
	for _, ch := range bp.disp.chans {
		bp.wg.Add(1)
		go bp.dispatch(ch)
	}
	bp.wg.Add(1)
	go bp.presenceWorker()
}

// presenceWorker applies the other replicas' presence messages, in the
// order the dispatchers passed them on.
func (bp *Backplane) presenceWorker() {
	defer bp.wg.Done()
	for {
		select {
		case <-bp.quit:
			return
		case msg := <-bp.disp.presence:
			if r := bp.lookup(strings.TrimPrefix(msg.Subject, livePrefix)); r != nil {
				r.onPresence(msg)
			}
		}
	}
}

func (bp *Backplane) dispatch(ch chan *nats.Msg) {
	defer bp.wg.Done()
	for {
		select {
		case <-bp.quit:
			return
		case msg := <-ch:
			switch {
			case msg.Sub == nil:
				bp.disp.passBarrier(msg)
			case msg.Header.Get(jetstream.StreamHeader) != "":
				bp.onLive(msg)
			default:
				// A replica's presence message: handled by the presence
				// goroutine, so that live messages never wait behind a
				// burst of them. Dropped when that is far behind (the next
				// snapshot repairs it).
				select {
				case bp.disp.presence <- msg:
				default:
					bp.log.Debug("presence message dropped: too many waiting", "subject", msg.Subject)
				}
			}
		}
	}
}

// barrier returns once every dispatcher has handled everything its
// channel held when barrier was called, or on Close (false).
func (bp *Backplane) barrier() bool {
	var wg sync.WaitGroup
	d := &bp.disp
	msgs := make([]*nats.Msg, len(d.chans))
	d.mu.Lock()
	for i := range d.chans {
		msgs[i] = &nats.Msg{}
		d.barriers[msgs[i]] = &wg
		wg.Add(1)
	}
	d.mu.Unlock()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	defer func() {
		d.mu.Lock()
		for _, m := range msgs {
			if _, ok := d.barriers[m]; ok {
				delete(d.barriers, m)
				wg.Done()
			}
		}
		d.mu.Unlock()
		<-done
	}()
	for i, ch := range d.chans {
		select {
		case ch <- msgs[i]:
		case <-bp.quit:
			return false
		}
	}
	select {
	case <-done:
		return true
	case <-bp.quit:
		return false
	}
}

func (d *dispatchers) passBarrier(msg *nats.Msg) {
	d.mu.Lock()
	wg, ok := d.barriers[msg]
	delete(d.barriers, msg)
	d.mu.Unlock()
	if ok {
		wg.Done()
	}
}

// onLive hands a republished message to its room. Messages that arrive
// while the stream is not checked on the current connection may come from
// a stream this replica no longer serves; they are dropped, and the repair
// that follows the check reads them from the stream (see ensureStream).
func (bp *Backplane) onLive(msg *nats.Msg) {
	r := bp.lookup(strings.TrimPrefix(msg.Subject, livePrefix))
	if r == nil || bp.checked.Load() != bp.connGen()+1 {
		return
	}
	lm, ok := parseLive(r.name, msg, time.Now())
	if !ok {
		bp.log.Debug("a message on a live subject without the stream's headers; ignored", "subject", msg.Subject)
		return
	}
	r.onLive(&lm)
}

// subscribe subscribes r to its live subject. A channel subscription has
// no pending limits of its own: the shared channel is its buffer.
func (bp *Backplane) subscribe(r *room) (*nats.Subscription, error) {
	return bp.nc.ChanSubscribe(livePrefix+r.name, bp.disp.of(r.name))
}

// onAsyncError handles the NATS client's asynchronous errors: a live
// subscription that dropped messages (its channel was full) repairs its
// room (presence messages dropped with them are repaired by the next
// snapshots).
func (bp *Backplane) onAsyncError(sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrSlowConsumer) && sub != nil && strings.HasPrefix(sub.Subject, livePrefix) {
		bp.met.drops.Inc()
		if r := bp.lookup(strings.TrimPrefix(sub.Subject, livePrefix)); r != nil {
			r.requestRepair(causeDropped, 0)
		}
		return
	}
	bp.log.Warn("NATS async error", "err", err)
}
