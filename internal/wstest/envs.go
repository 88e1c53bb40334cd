package wstest

// Env is one server → client envelope, decoded.
type Env map[string]any

// Type is the envelope's type.
func (e Env) Type() string { return e.Str("type") }

// Str is the string field k ("" if absent).
func (e Env) Str(k string) string { s, _ := e[k].(string); return s }

// U64 is the numeric field k (0 if absent).
func (e Env) U64(k string) uint64 { f, _ := e[k].(float64); return uint64(f) }

// Users lists the ids of the user list k (members, joined, left).
func (e Env) Users(k string) []string {
	var ids []string
	xs, _ := e[k].([]any)
	for _, x := range xs {
		if m, ok := x.(map[string]any); ok {
			id, _ := m["id"].(string)
			ids = append(ids, id)
		}
	}
	return ids
}

// Join sends a join and returns the joined that answers it, in order
// (Expect: only presence frames may come between).
func (c *Client) Join(room string) Env {
	c.t.Helper()
	c.Send(map[string]any{"type": "join", "room": room})
	j := c.Expect("joined")
	if j.Str("room") != room {
		c.t.Fatalf("joined %v; want room %s", j, room)
	}
	return j
}

// JoinSince sends a join (with since when not nil) and returns the joined
// of room received after it, whatever arrives between: for clients that
// wait on what they received rather than read in order.
func (c *Client) JoinSince(room string, since *uint64) Env {
	c.t.Helper()
	c.mu.Lock()
	n := len(c.envs)
	c.mu.Unlock()
	msg := map[string]any{"type": "join", "room": room}
	if since != nil {
		msg["since"] = *since
	}
	c.Send(msg)
	var j Env
	if !c.WaitFor("joined "+room, func(envs []Env) bool {
		for _, e := range envs[n:] {
			if e.Type() == "joined" && e.Str("room") == room {
				j = e
				return true
			}
		}
		return false
	}) {
		c.t.Fatalf("connection closed (%v) while waiting for joined %s", c.ended(), room)
	}
	return j
}

// SendResult is how a send was answered: its ack's seq, or the error's
// code, or the connection closed first.
type SendResult struct {
	Seq    uint64
	Code   string
	Closed bool
}

// SendWait sends text to room with ref and waits for the ack or error
// that carries ref. A connection the server is closing may refuse the
// write: then SendWait waits for the connection to end and reports Closed.
func (c *Client) SendWait(room, text, ref string) SendResult {
	c.t.Helper()
	if err := c.TrySend(map[string]any{"type": "send", "room": room, "text": text, "ref": ref}); err != nil {
		if c.await(func() bool { return false }) == ErrTimeout {
			c.t.Fatalf("the write of %s failed (%v) and the connection did not end", ref, err)
		}
		return SendResult{Closed: true}
	}
	var res SendResult
	ok := c.WaitFor("the answer to "+ref, func(envs []Env) bool {
		for _, e := range envs {
			if e.Str("ref") != ref {
				continue
			}
			switch e.Type() {
			case "ack":
				res.Seq = e.U64("seq")
				return true
			case "error":
				res.Code = e.Str("code")
				return true
			}
		}
		return false
	})
	res.Closed = !ok
	return res
}

// Messages returns the message envelopes of room, in order.
func Messages(envs []Env, room string) []Env {
	var out []Env
	for _, e := range envs {
		if e.Type() == "message" && e.Str("room") == room {
			out = append(out, e)
		}
	}
	return out
}

// Seqs lists the message seqs of room, in order.
func Seqs(envs []Env, room string) []uint64 {
	var out []uint64
	for _, e := range Messages(envs, room) {
		out = append(out, e.U64("seq"))
	}
	return out
}

// Members applies the joined and presence frames of room as the protocol
// says (idempotent set operations keyed by user id): the member set and
// the online count as of the latest frame.
func Members(envs []Env, room string) (map[string]bool, int) {
	set := map[string]bool{}
	online := 0
	for _, e := range envs {
		if e.Str("room") != room {
			continue
		}
		switch e.Type() {
		case "joined":
			set = map[string]bool{}
			for _, id := range e.Users("members") {
				set[id] = true
			}
			online = int(e.U64("online"))
		case "presence":
			for _, id := range e.Users("joined") {
				set[id] = true
			}
			for _, id := range e.Users("left") {
				delete(set, id)
			}
			online = int(e.U64("online"))
		}
	}
	return set, online
}
