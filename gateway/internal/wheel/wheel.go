// Package wheel visits many timed items once per revolution, so that a
// server checks every connection's heartbeat and deadlines with one ticker
// per shard instead of a timer (and its runtime heap entry) per
// connection.
//
// A Wheel has a fixed number of slots; each item sits in one slot, and the
// wheel's goroutine visits one slot per tick, so every item is visited
// once per revolution (slots × tick), spread evenly over it. An item
// checks its own deadlines when visited, so a deadline is noticed at most
// one revolution late: pick the revolution well below the shortest
// timeout to be enforced.
package wheel

import (
	"sync"
	"time"
)

// Item is something the wheel visits.
type Item interface {
	// Visit is called once per revolution, on the wheel's goroutine and
	// outside its lock; it must not block. It may call Remove.
	Visit(now time.Time)
}

// Handle is an item's place on a wheel, kept by the item; the wheel
// updates it.
type Handle struct {
	slot, idx int // guarded by the wheel's mu; slot -1: not on the wheel
}

// Entry pairs an item with its handle.
type entry struct {
	item Item
	h    *Handle
}

// Wheel visits its items once per revolution.
type Wheel struct {
	// static after New
	tick time.Duration
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	slots [][]entry
	next  int // the slot Add fills next, round robin
	n     int
}

// New starts a wheel whose revolution is rev, in the given number of
// slots.
func New(rev time.Duration, slots int) *Wheel {
	slots = max(slots, 1)
	w := &Wheel{
		tick:  max(rev/time.Duration(slots), time.Millisecond),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		slots: make([][]entry, slots),
	}
	go w.run()
	return w
}

// Add puts item on the wheel; h is its handle, to Remove it by.
func (w *Wheel) Add(item Item, h *Handle) {
	w.mu.Lock()
	s := w.next
	w.next = (w.next + 1) % len(w.slots)
	h.slot, h.idx = s, len(w.slots[s])
	w.slots[s] = append(w.slots[s], entry{item, h})
	w.n++
	w.mu.Unlock()
}

// Remove takes the item with handle h off the wheel; it is idempotent. The
// item may still be visited once if its slot is being visited.
func (w *Wheel) Remove(h *Handle) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if h.slot < 0 || h.slot >= len(w.slots) {
		return
	}
	s := w.slots[h.slot]
	if h.idx >= len(s) || s[h.idx].h != h {
		return
	}
	last := len(s) - 1
	s[h.idx] = s[last]
	s[h.idx].h.idx = h.idx
	s[last] = entry{}
	w.slots[h.slot] = s[:last]
	h.slot = -1
	w.n--
}

// Len is the number of items on the wheel.
func (w *Wheel) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// Close stops the wheel's goroutine and waits for it.
func (w *Wheel) Close() {
	close(w.stop)
	<-w.done
}

func (w *Wheel) run() {
	defer close(w.done)
	t := time.NewTicker(w.tick)
	defer t.Stop()
	var batch []Item
	cur := 0
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			w.mu.Lock()
			for _, e := range w.slots[cur] {
				batch = append(batch, e.item)
			}
			w.mu.Unlock()
			cur = (cur + 1) % len(w.slots)
			for i, it := range batch {
				it.Visit(now)
				batch[i] = nil
			}
			batch = batch[:0]
		}
	}
}
