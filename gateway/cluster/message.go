package cluster

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Message headers. Values are URL path-escaped where they carry user
// input, so no byte of a name can break a header line.
const (
	hdrFrom = "Chatgate-From" // sender's user id
	hdrName = "Chatgate-Name" // sender's display name
	hdrTS   = "Chatgate-Ts"   // accepted at, unix ms
	hdrPrev = "Chatgate-Prev" // the room's previous message seq, or the floor (see chain.go)
	// hdrSystem marks a system message, published through the server API
	// (its sender is the system sender named by Chatgate-Name). Members'
	// sends never carry it.
	hdrSystem = "Chatgate-System"
	// hdrStart marks a message published when the stream held no message
	// of the room (the publish expected the subject to be empty): it starts
	// the room's chain, and its Chatgate-Prev is the floor (see chain.go).
	hdrStart = "Chatgate-Start"
)

// stored is one message of a room, live or read from the stream, encoded
// for the members once.
type stored struct {
	link
	data []byte
	hdr  nats.Header
}

// decode builds a room's message from its stream seq, headers and text.
func decode(room string, seq uint64, h nats.Header, text []byte) stored {
	id, _ := url.PathUnescape(h.Get(hdrFrom))
	name, _ := url.PathUnescape(h.Get(hdrName))
	ts, _ := strconv.ParseInt(h.Get(hdrTS), 10, 64)
	st := stored{link: link{seq: seq}, hdr: h}
	if p := h.Get(hdrPrev); p != "" {
		if v, err := strconv.ParseUint(p, 10, 64); err == nil {
			st.prev, st.hasPrev = v, true
			st.start = h.Get(hdrStart) == "1"
		}
	}
	if h.Get(hdrSystem) != "" {
		st.data = protocol.SystemMessage(room, seq, name, string(text), ts)
	} else {
		st.data = protocol.Message(room, seq, protocol.User{ID: id, Name: name}, string(text), ts)
	}
	return st
}

// liveMsg is a message the stream republished on a room's live subject.
type liveMsg struct {
	stored
	last uint64 // Nats-Last-Sequence: the room's message stored before it, 0 if none
	at   time.Time
}

func (m *liveMsg) liveLink() liveLink { return liveLink{seq: m.seq, last: m.last} }

// parseLive reads a republished message; ok is false when it lacks the
// headers the stream sets (not republished by the stream).
func parseLive(room string, msg *nats.Msg, at time.Time) (liveMsg, bool) {
	seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil || seq == 0 {
		return liveMsg{}, false
	}
	last, err := strconv.ParseUint(msg.Header.Get(jetstream.LastSequenceHeader), 10, 64)
	if err != nil {
		return liveMsg{}, false
	}
	return liveMsg{stored: decode(room, seq, msg.Header, msg.Data), last: last, at: at}, true
}

// frame is st as a frame for the members, accepted at now, with the deliver
// span of a sampled trace (nil otherwise; the caller ends it).
func (bp *Backplane) frame(st *stored, now time.Time) (*broker.Frame, trace.Span) {
	f := &broker.Frame{Data: st.data, Accepted: now}
	ctx := bp.cfg.Prop.Extract(context.Background(), headerCarrier(st.hdr))
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return f, nil
	}
	f.TraceID = sc.TraceID()
	_, span := bp.tracer.Start(ctx, "chatgate.backplane.deliver", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.operation.type", "process")))
	return f, span
}

// headerCarrier carries W3C trace context in NATS headers, keys as given.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c headerCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
