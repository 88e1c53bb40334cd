package hub

// history is a fixed-size ring of a room's most recent encoded messages.
// It is guarded by its room's mu.
type history struct {
	buf  [][]byte // encoded message frames; buf[i] holds seq where seq%cap == i
	last uint64   // seq of the newest entry; 0 when empty
	n    int      // entries held, ≤ len(buf)
	base uint64   // the room's seq before its first message
}

// newHistory makes a ring for a room whose seqs start after base.
func newHistory(size int, base uint64) history {
	return history{buf: make([][]byte, size), base: base}
}

func (h *history) push(seq uint64, data []byte) {
	h.buf[seq%uint64(len(h.buf))] = data
	h.last = seq
	if h.n < len(h.buf) {
		h.n++
	}
}

// after returns the held messages with seq > since, oldest first, and
// whether that is every message in (since, current]. current is the room's
// newest seq; a since beyond it (from an older life of the room) recovers
// nothing. since 0 means "from the beginning": complete when the ring still
// holds the room's first message.
func (h *history) after(since, current uint64) (msgs [][]byte, complete bool) {
	if since > current {
		return nil, false
	}
	if since == 0 && h.base > 0 {
		msgs, _ = h.after(h.base, current)
		return msgs, h.n == 0 || h.last-uint64(h.n) == h.base
	}
	if since == current {
		return nil, true
	}
	oldest := h.last - uint64(h.n) + 1 // valid when n > 0
	if h.n == 0 {
		return nil, false
	}
	from := since + 1
	complete = from >= oldest
	if from < oldest {
		from = oldest
	}
	msgs = make([][]byte, 0, h.last-from+1)
	for s := from; s <= h.last; s++ {
		msgs = append(msgs, h.buf[s%uint64(len(h.buf))])
	}
	return msgs, complete
}

// latest returns the newest limit held messages, oldest first, and whether
// older ones were left out.
func (h *history) latest(limit int) (msgs [][]byte, truncated bool) {
	n := min(h.n, max(limit, 0))
	msgs = make([][]byte, 0, n)
	for s := h.last - uint64(n) + 1; s <= h.last && n > 0; s++ {
		msgs = append(msgs, h.buf[s%uint64(len(h.buf))])
	}
	return msgs, n < h.n
}
