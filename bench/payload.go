package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// The text of every bench message is
//
//	<bench id>|s<sender>|<counter>|<intended send time, unix ns>|<padding>
//
// for example "cb7f3a|s12|345|1764100000123456789|xxxx". It uses only
// characters that need no JSON escaping and survive the gorilla chat
// example's whitespace trimming, so with --proto raw the same text is the
// whole WebSocket message.

// minTextBytes is the shortest text that still holds every field.
const minTextBytes = 48

// Payload is a decoded bench text.
type Payload struct {
	Bench    []byte // aliases the input
	Sender   int
	Counter  uint64
	Intended int64 // unix nanoseconds
}

// AppendText appends a bench text of exactly size bytes (or the fields
// alone, if they are longer) to dst.
func AppendText(dst []byte, benchID string, sender int, counter uint64, intendedNs int64, size int) []byte {
	start := len(dst)
	dst = append(dst, benchID...)
	dst = append(dst, "|s"...)
	dst = strconv.AppendInt(dst, int64(sender), 10)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, counter, 10)
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, intendedNs, 10)
	dst = append(dst, '|')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// ParseText decodes a bench text; ok is false for anything else.
func ParseText(b []byte) (p Payload, ok bool) {
	i := bytes.IndexByte(b, '|')
	if i <= 0 {
		return p, false
	}
	p.Bench, b = b[:i], b[i+1:]
	if len(b) < 2 || b[0] != 's' {
		return p, false
	}
	b = b[1:]
	sender, b, ok := cutUint(b)
	if !ok || sender > 1<<31 {
		return p, false
	}
	p.Sender = int(sender)
	if p.Counter, b, ok = cutUint(b); !ok {
		return p, false
	}
	intended, _, ok := cutUint(b)
	if !ok || intended > 1<<63-1 {
		return p, false
	}
	p.Intended = int64(intended)
	return p, true
}

// cutUint parses the decimal digits before the next '|' and returns what
// follows it.
func cutUint(b []byte) (v uint64, rest []byte, ok bool) {
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		d := uint64(b[n] - '0')
		if v > (1<<64-1-d)/10 {
			return 0, nil, false
		}
		v = v*10 + d
		n++
	}
	if n == 0 || n >= len(b) || b[n] != '|' {
		return 0, nil, false
	}
	return v, b[n+1:], true
}

// appendSend appends a chatgate send envelope. room and text are bench
// generated and need no escaping.
func appendSend(dst []byte, room string, text []byte, ref uint64) []byte {
	dst = append(dst, `{"type":"send","room":"`...)
	dst = append(dst, room...)
	dst = append(dst, `","text":"`...)
	dst = append(dst, text...)
	dst = append(dst, `","ref":"`...)
	dst = strconv.AppendUint(dst, ref, 10)
	return append(dst, `"}`...)
}

// joinRef is the ref of every join: an error envelope carrying it refuses
// the join (send refs are numbers).
const joinRef = "j"

// appendJoin appends a chatgate join envelope, with since when given.
func appendJoin(dst []byte, room string, since *uint64) []byte {
	dst = append(dst, `{"type":"join","room":"`...)
	dst = append(dst, room...)
	dst = append(dst, `","ref":"`+joinRef+`"`...)
	if since != nil {
		dst = append(dst, `,"since":`...)
		dst = strconv.AppendUint(dst, *since, 10)
	}
	return append(dst, '}')
}

// envelope is the part of a server → client envelope the bench reads.
// Byte slices alias the frame being parsed.
type envelope struct {
	Type      []byte
	Room      []byte
	Text      []byte
	Ref       []byte
	Code      []byte
	Seq       uint64
	HasSeq    bool
	Recovered int8 // -1 absent, 0 false, 1 true
	RetryMs   int64
	Online    int64
	// SendPerSec is welcome.limits.send_per_sec (0 when absent).
	SendPerSec float64
}

var errEnvelope = errors.New("malformed envelope")

// parseEnvelope reads one JSON object without allocating (unless a string
// it keeps has escapes). It reads top-level fields of interest, plus
// welcome.limits.send_per_sec, and skips the rest, in any order.
func parseEnvelope(b []byte, e *envelope) error {
	*e = envelope{Recovered: -1}
	p := jsonScanner{b: b}
	return p.object(func(key []byte) error {
		switch string(key) {
		case "type":
			return p.str(&e.Type)
		case "room":
			return p.str(&e.Room)
		case "text":
			return p.str(&e.Text)
		case "ref":
			return p.str(&e.Ref)
		case "code":
			return p.str(&e.Code)
		case "seq":
			v, err := p.uint()
			e.Seq, e.HasSeq = v, err == nil
			return err
		case "retry_after_ms":
			v, err := p.uint()
			e.RetryMs = int64(min(v, 1<<62))
			return err
		case "online":
			v, err := p.uint()
			e.Online = int64(min(v, 1<<62))
			return err
		case "recovered":
			v, err := p.boolean()
			e.Recovered = 0
			if v {
				e.Recovered = 1
			}
			return err
		case "limits":
			return p.object(func(k []byte) error {
				if string(k) != "send_per_sec" {
					return p.skip()
				}
				start := p.i
				if err := p.skip(); err != nil {
					return err
				}
				f, err := strconv.ParseFloat(string(p.b[start:p.i]), 64)
				if err != nil {
					return errEnvelope
				}
				e.SendPerSec = f
				return nil
			})
		}
		return p.skip()
	})
}

// jsonScanner is a minimal JSON reader for the flat envelopes of the
// protocol.
type jsonScanner struct {
	b []byte
	i int
}

func (p *jsonScanner) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonScanner) expect(c byte) error {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != c {
		return errEnvelope
	}
	p.i++
	return nil
}

// object reads an object, calling field for each key with the scanner
// positioned at the value; field must consume the value.
func (p *jsonScanner) object(field func(key []byte) error) error {
	if err := p.expect('{'); err != nil {
		return err
	}
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return nil
	}
	for {
		var key []byte
		if err := p.str(&key); err != nil {
			return err
		}
		if err := p.expect(':'); err != nil {
			return err
		}
		p.ws()
		if err := field(key); err != nil {
			return err
		}
		p.ws()
		if p.i >= len(p.b) {
			return errEnvelope
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return nil
		default:
			return errEnvelope
		}
	}
}

// str reads a string into *dst: a subslice of the input when it has no
// escapes, else a decoded copy.
func (p *jsonScanner) str(dst *[]byte) error {
	if err := p.expect('"'); err != nil {
		return err
	}
	start, escaped := p.i, false
	for {
		j := bytes.IndexByte(p.b[p.i:], '"')
		if j < 0 {
			return errEnvelope
		}
		end := p.i + j
		if bytes.IndexByte(p.b[p.i:end], '\\') >= 0 {
			escaped = true
		}
		p.i = end + 1
		// The quote ends the string unless an odd run of backslashes
		// escapes it.
		n := 0
		for k := end - 1; k >= start && p.b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			break
		}
	}
	raw := p.b[start : p.i-1]
	if !escaped {
		*dst = raw
		return nil
	}
	var s string
	if err := json.Unmarshal(p.b[start-1:p.i], &s); err != nil {
		return errEnvelope
	}
	*dst = []byte(s)
	return nil
}

func (p *jsonScanner) uint() (uint64, error) {
	p.ws()
	var v uint64
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		d := uint64(p.b[p.i] - '0')
		if v > (1<<64-1-d)/10 {
			return 0, errEnvelope
		}
		v = v*10 + d
		p.i++
		n++
	}
	if n == 0 {
		return 0, errEnvelope
	}
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return 0, errEnvelope
	}
	return v, nil
}

func (p *jsonScanner) boolean() (bool, error) {
	switch {
	case bytes.HasPrefix(p.b[p.i:], []byte("true")):
		p.i += 4
		return true, nil
	case bytes.HasPrefix(p.b[p.i:], []byte("false")):
		p.i += 5
		return false, nil
	}
	return false, errEnvelope
}

// skip consumes one value of any kind.
func (p *jsonScanner) skip() error {
	p.ws()
	if p.i >= len(p.b) {
		return errEnvelope
	}
	switch c := p.b[p.i]; {
	case c == '"':
		var s []byte
		return p.str(&s)
	case c == '{' || c == '[':
		depth := 0
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case '"':
				var s []byte
				if err := p.str(&s); err != nil {
					return err
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					p.i++
					return nil
				}
			}
			p.i++
		}
		return errEnvelope
	default: // number, true, false, null
		start := p.i
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				if p.i == start {
					return errEnvelope
				}
				return nil
			}
			p.i++
		}
		return nil
	}
}
