package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/api"
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

func sha256Hex(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

// noBroker is an Operator for tests that never reach the broker.
type noBroker struct{ broker.Operator }

// TestBadRequests: every malformed, oversized or mistaken request gets a
// clear JSON error with the protocol's code and the matching status, and
// changes nothing.
func TestBadRequests(t *testing.T) {
	e := newEnv(t, func(c *api.Config, _ *api.Deps) { c.MaxBodyBytes = 4096 })
	long := strings.Repeat("x", 65) // MaxTextBytes is 64
	batch := func(n int) string {
		var items []string
		for i := range n {
			items = append(items, fmt.Sprintf(`{"room":"r","text":"m%d"}`, i))
		}
		return `{"messages":[` + strings.Join(items, ",") + `]}`
	}
	cases := []struct {
		name         string
		method, path string
		body         string
		status       int
		code         string
		message      string // a part of the error's message
	}{
		{"not JSON", "POST", "/v1/publish", `room=r&text=x`, 400, "bad_request", "invalid JSON"},
		{"truncated JSON", "POST", "/v1/publish", `{"room":"r","text":"x"`, 400, "bad_request", "ends too early"},
		{"empty body", "POST", "/v1/publish", ``, 400, "bad_request", "empty"},
		{"array body", "POST", "/v1/publish", `[1]`, 400, "bad_request", "must be a JSON object"},
		{"unknown field", "POST", "/v1/publish", `{"room":"r","text":"x","txt":"y"}`, 400, "bad_request", `unknown field "txt"`},
		{"wrong type", "POST", "/v1/publish", `{"room":"r","text":42}`, 400, "bad_request", "field text must be a string"},
		{"trailing data", "POST", "/v1/publish", `{"room":"r","text":"x"}{"room":"r","text":"y"}`, 400, "bad_request", "after its JSON object"},
		{"body over the limit", "POST", "/v1/publish", `{"room":"r","text":"` + strings.Repeat("y", 5000) + `"}`, 413, "too_large", "--api-max-body-bytes"},
		{"invalid room", "POST", "/v1/publish", `{"room":"no spaces","text":"x"}`, 400, "invalid_room", "room must match"},
		{"empty text", "POST", "/v1/publish", `{"room":"r","text":""}`, 400, "bad_request", "text must not be empty"},
		{"text over --max-text-bytes", "POST", "/v1/publish", `{"room":"r","text":"` + long + `"}`, 413, "too_large", "longer than 64 bytes"},
		{"sender with a bidi override", "POST", "/v1/publish", `{"room":"r","text":"x","sender":"a\u202eb"}`, 400, "bad_request", "sender must be"},
		{"sender too long", "POST", "/v1/publish", `{"room":"r","text":"x","sender":"` + strings.Repeat("s", 33) + `"}`, 400, "bad_request", "sender must be"},
		{"empty batch", "POST", "/v1/publish/batch", `{"messages":[]}`, 400, "bad_request", "at least one"},
		{"batch over 100", "POST", "/v1/publish/batch", batch(101), 413, "too_large", "at most 100"},
		{"batch with a bad message", "POST", "/v1/publish/batch", `{"messages":[{"room":"r","text":"ok"},{"room":"r","text":""}]}`, 400, "bad_request", "messages[1]: text must not be empty"},
		{"disconnect nobody", "POST", "/v1/disconnect", `{}`, 400, "bad_request", "give user"},
		{"ban without a user", "POST", "/v1/disconnect", `{"conn":"c_1","ban":{"room":"r","seconds":5}}`, 400, "bad_request", "a ban needs user"},
		{"ban of 0 seconds", "POST", "/v1/ban", `{"room":"r","user":"u","seconds":0}`, 400, "bad_request", "seconds must be"},
		{"ban over a year", "POST", "/v1/ban", `{"room":"r","user":"u","seconds":31536001}`, 400, "bad_request", "seconds must be"},
		{"negative seconds", "POST", "/v1/ban", `{"room":"r","user":"u","seconds":-5}`, 400, "bad_request", "seconds must be"},
		{"fractional seconds", "POST", "/v1/ban", `{"room":"r","user":"u","seconds":1.5}`, 400, "bad_request", "field seconds must be an integer"},
		{"ban in an invalid room", "POST", "/v1/ban", `{"room":"a/b","user":"u","seconds":5}`, 400, "invalid_room", "room must match"},
		{"unban without a user", "POST", "/v1/unban", `{"room":"r"}`, 400, "bad_request", "user is required"},
		{"user too long", "POST", "/v1/disconnect", `{"user":"` + strings.Repeat("u", 129) + `"}`, 400, "bad_request", "longer than 128"},
		{"unknown query parameter", "GET", "/v1/rooms?limt=5", ``, 400, "bad_request", `unknown query parameter "limt"`},
		{"limit 0", "GET", "/v1/rooms?limit=0", ``, 400, "bad_request", "limit must be"},
		{"limit too big", "GET", "/v1/rooms/r/history?limit=1001", ``, 400, "bad_request", "limit must be"},
		{"negative since", "GET", "/v1/rooms/r/history?since=-1", ``, 400, "bad_request", "since must be"},
		{"since twice", "GET", "/v1/rooms/r/history?since=1&since=2", ``, 400, "bad_request", "given 2 times"},
		{"invalid room in the path", "GET", "/v1/rooms/a%20b/presence", ``, 400, "invalid_room", "room must match"},
		{"unknown endpoint", "POST", "/v1/publsh", `{}`, 404, "not_found", "/v1/publsh"},
		{"unknown room endpoint", "GET", "/v1/rooms/r/members", ``, 404, "not_found", "no such endpoint"},
		{"wrong method", "GET", "/v1/publish", ``, 405, "method_not_allowed", "use POST"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(keyAll, tc.method, tc.path, tc.body)
			if r.status != tc.status || r.code() != tc.code || !strings.Contains(r.message(), tc.message) {
				t.Fatalf("%d %s; want %d with code %s and a message with %q", r.status, r.raw, tc.status, tc.code, tc.message)
			}
			if tc.status == 405 && r.header.Get("Allow") != "POST" {
				t.Fatalf("405 without Allow: POST")
			}
		})
	}
	if rooms, _, _ := e.hub.ActiveRooms(context.Background(), "", 100); len(rooms) != 0 {
		t.Fatalf("bad requests made rooms: %+v", rooms)
	}
	if h, _ := e.hub.History(context.Background(), "r", nil, 100); len(h.Messages) != 0 {
		t.Fatalf("bad requests published %d messages", len(h.Messages))
	}
	if _, perr := e.hub.Join(newSub("u"), "r", nil); perr != nil {
		t.Fatalf("bad requests banned: %v", perr)
	}
}

// TestPublishAndRead: a publish reaches every member as a system message
// with the seq it was answered with; a batch publishes each message in
// order; history, presence and the room list agree with what members see.
func TestPublishAndRead(t *testing.T) {
	e := newEnv(t, nil)
	a1, a2, b := newSub("alice"), newSub("alice"), newSub("bob")
	e.join(a1, "lobby")
	e.join(a2, "lobby")
	e.join(b, "lobby")
	e.join(b, "side")

	r := e.do(keyPublish, "POST", "/v1/publish", `{"room":"lobby","text":"maintenance at noon","sender":" Ops "}`)
	if r.status != 200 || r.body["room"] != "lobby" || num(r.body["seq"]) == 0 {
		t.Fatalf("publish: %d %s", r.status, r.raw)
	}
	seq := num(r.body["seq"])
	for _, s := range []*sub{a1, a2, b} {
		m := s.waitMessages(t, "lobby", 1)[0]
		from, _ := m["from"].(map[string]any)
		if num(m["seq"]) != seq || m["text"] != "maintenance at noon" || m["system"] != true || from["id"] != "system" || from["name"] != "Ops" {
			t.Fatalf("%s got %v; want the system message from Ops with seq %d", s.user.ID, m, seq)
		}
	}
	r = e.do(keyPublish, "POST", "/v1/publish", `{"room":"lobby","text":"no sender"}`)
	if m := a1.waitMessages(t, "lobby", 2)[1]; m["from"].(map[string]any)["name"] != api.DefaultSender {
		t.Fatalf("without a sender the message is from %v; want %q", m["from"], api.DefaultSender)
	}

	r = e.do(keyPublish, "POST", "/v1/publish/batch", `{"messages":[{"room":"lobby","text":"b1"},{"room":"side","text":"b2","sender":"Bot"},{"room":"lobby","text":"b3"}]}`)
	results, _ := r.body["results"].([]any)
	if r.status != 200 || len(results) != 3 {
		t.Fatalf("batch: %d %s", r.status, r.raw)
	}
	var lobbySeqs []uint64
	for i, res := range results {
		m := res.(map[string]any)
		if m["error"] != nil || num(m["seq"]) == 0 {
			t.Fatalf("batch result %d: %v", i, m)
		}
		if m["room"] == "lobby" {
			lobbySeqs = append(lobbySeqs, num(m["seq"]))
		}
	}
	got := b.waitMessages(t, "lobby", 4)
	if num(got[2]["seq"]) != lobbySeqs[0] || num(got[3]["seq"]) != lobbySeqs[1] || got[2]["text"] != "b1" || got[3]["text"] != "b3" {
		t.Fatalf("bob's lobby messages %v; want b1 then b3 with seqs %v", got, lobbySeqs)
	}
	if side := b.waitMessages(t, "side", 1); side[0]["text"] != "b2" {
		t.Fatalf("bob's side messages %v", side)
	}

	// History is what members received, byte for byte as JSON values.
	r = e.do(keyRead, "GET", "/v1/rooms/lobby/history", "")
	msgs, _ := r.body["messages"].([]any)
	if r.status != 200 || len(msgs) != 4 || num(r.body["seq"]) != lobbySeqs[1] || r.body["truncated"] != false {
		t.Fatalf("history: %d %s", r.status, r.raw)
	}
	for i, m := range msgs {
		want, _ := json.Marshal(got[i])
		have, _ := json.Marshal(m)
		if string(want) != string(have) {
			t.Fatalf("history message %d is %s; bob received %s", i, have, want)
		}
	}
	r = e.do(keyRead, "GET", "/v1/rooms/lobby/history?since="+strconv.FormatUint(seq, 10)+"&limit=2", "")
	msgs, _ = r.body["messages"].([]any)
	if len(msgs) != 2 || r.body["recovered"] != true || r.body["truncated"] != true || msgs[1].(map[string]any)["text"] != "b1" {
		t.Fatalf("history after %d, limit 2: %s", seq, r.raw)
	}

	r = e.do(keyRead, "GET", "/v1/rooms/lobby/presence", "")
	users, _ := r.body["users"].([]any)
	if r.status != 200 || num(r.body["online"]) != 2 || num(r.body["connections"]) != 3 || len(users) != 2 {
		t.Fatalf("presence: %d %s", r.status, r.raw)
	}
	if u := users[0].(map[string]any); u["id"] != "alice" || u["name"] != "name-alice" || num(u["connections"]) != 2 {
		t.Fatalf("presence's first user %v; want alice with 2 connections", u)
	}

	r = e.do(keyRead, "GET", "/v1/rooms?limit=1", "")
	rooms, _ := r.body["rooms"].([]any)
	if len(rooms) != 1 || rooms[0].(map[string]any)["room"] != "lobby" || r.body["next"] != "lobby" {
		t.Fatalf("rooms, limit 1: %s", r.raw)
	}
	r = e.do(keyRead, "GET", "/v1/rooms?after=lobby", "")
	rooms, _ = r.body["rooms"].([]any)
	if len(rooms) != 1 || rooms[0].(map[string]any)["room"] != "side" || num(rooms[0].(map[string]any)["online"]) != 1 || r.body["next"] != nil {
		t.Fatalf("rooms after lobby: %s", r.raw)
	}
}

// TestModeration: disconnect hands the broker the target (after the ban,
// when there is one), ban keeps the user out, unban lets them in; each is
// one audit line naming the key, the action, the target and the result.
func TestModeration(t *testing.T) {
	e := newEnv(t, nil)
	var targets []broker.Target
	e.hub.HandleDisconnects(func(tg broker.Target) int {
		targets = append(targets, tg)
		if _, perr := e.hub.Join(newSub(tg.User), "lobby", nil); perr == nil || perr.Code != protocol.CodeForbidden {
			t.Errorf("when the disconnect ran the user could still join the room they are banned from: %v", perr)
		}
		return 2
	})
	v := newSub("mallory")
	e.join(v, "lobby")
	r := e.do(keyModerate, "POST", "/v1/disconnect", `{"user":"mallory","ban":{"room":"lobby","seconds":600}}`)
	ban, _ := r.body["ban"].(map[string]any)
	until, _ := time.Parse(time.RFC3339, fmt.Sprint(ban["until"]))
	if r.status != 200 || num(r.body["disconnected"]) != 2 || ban["room"] != "lobby" || ban["user"] != "mallory" || time.Until(until) < 590*time.Second {
		t.Fatalf("disconnect with a ban: %d %s", r.status, r.raw)
	}
	if !slices.Equal(targets, []broker.Target{{User: "mallory"}}) {
		t.Fatalf("the broker was asked to disconnect %+v", targets)
	}
	e.hub.HandleDisconnects(func(tg broker.Target) int { targets = append(targets, tg); return 1 })
	if r := e.do(keyModerate, "POST", "/v1/disconnect", `{"conn":"c_abc"}`); r.status != 200 || num(r.body["disconnected"]) != 1 {
		t.Fatalf("disconnect of a connection: %d %s", r.status, r.raw)
	}
	if targets[1] != (broker.Target{Conn: "c_abc"}) {
		t.Fatalf("the broker was asked to disconnect %+v", targets[1])
	}
	if r := e.do(keyModerate, "POST", "/v1/unban", `{"room":"lobby","user":"mallory"}`); r.status != 200 {
		t.Fatalf("unban: %d %s", r.status, r.raw)
	}
	if _, perr := e.hub.Join(newSub("mallory"), "lobby", nil); perr != nil {
		t.Fatalf("a join after the unban: %v", perr)
	}
	if r := e.do(keyModerate, "POST", "/v1/ban", `{"room":"lobby","user":"mallory","seconds":60}`); r.status != 200 || r.body["user"] != "mallory" {
		t.Fatalf("ban: %d %s", r.status, r.raw)
	}
	if _, perr := e.hub.Join(newSub("mallory"), "lobby", nil); perr == nil || perr.Code != protocol.CodeForbidden {
		t.Fatalf("a join after the ban: %v; want forbidden", perr)
	}
	e.do(keyPublish, "POST", "/v1/disconnect", `{"user":"mallory"}`) // 403: audited too

	audits := e.log.records(t, "audit")
	want := []struct{ action, key, user, result string }{
		{"disconnect", "moderator", "mallory", "ok"},
		{"disconnect", "moderator", "", "ok"},
		{"unban", "moderator", "mallory", "ok"},
		{"ban", "moderator", "mallory", "ok"},
		{"disconnect", "publisher", "", "forbidden"},
	}
	if len(audits) != len(want) {
		t.Fatalf("%d audit lines; want %d: %v", len(audits), len(want), audits)
	}
	for i, w := range want {
		a := audits[i]
		user, _ := a["user"].(string)
		if a["action"] != w.action || a["key"] != w.key || user != w.user || a["result"] != w.result {
			t.Errorf("audit line %d is %v; want action %s by %s on %q: %s", i, a, w.action, w.key, w.user, w.result)
		}
	}
	if audits[0]["room"] != "lobby" || audits[0]["ban_seconds"] != 600.0 || audits[0]["disconnected"] != 2.0 {
		t.Errorf("the first audit line %v lacks the ban or the count", audits[0])
	}
}

// TestRateLimit: each key has its own budget; over it the answer is 429
// with Retry-After and retry_after_ms; a batch costs one per message and
// is refused whole when the budget cannot cover it.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *api.Config, _ *api.Deps) { c.Rate, c.Burst = 0.5, api.MaxBatch })
	for i := range api.MaxBatch {
		if r := e.do(keyRead, "GET", "/v1/rooms", ""); r.status != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, r.status, r.raw)
		}
	}
	r := e.do(keyRead, "GET", "/v1/rooms", "")
	retry, _ := r.body["error"].(map[string]any)["retry_after_ms"].(float64)
	if r.status != 429 || r.code() != "rate_limited" || retry <= 0 || r.header.Get("Retry-After") == "" {
		t.Fatalf("over the budget: %d %s (Retry-After %q); want 429 rate_limited with a retry", r.status, r.raw, r.header.Get("Retry-After"))
	}
	if r := e.do(keyPublish, "POST", "/v1/publish", `{"room":"r","text":"other key"}`); r.status != 200 {
		t.Fatalf("another key was limited too: %d %s", r.status, r.raw)
	}
	var items []string
	for i := range api.MaxBatch {
		items = append(items, fmt.Sprintf(`{"room":"r","text":"m%d"}`, i))
	}
	r = e.do(keyPublish, "POST", "/v1/publish/batch", `{"messages":[`+strings.Join(items, ",")+`]}`)
	if r.status != 429 || r.code() != "rate_limited" {
		t.Fatalf("a batch over what is left of the budget: %d %s; want 429", r.status, r.raw)
	}
	if h, _ := e.hub.History(context.Background(), "r", nil, 1000); len(h.Messages) != 1 {
		t.Fatalf("the refused batch published: the room holds %d messages", len(h.Messages))
	}
}

// slowBroker is the hub with a PublishSystem that waits for its context.
type slowBroker struct{ broker.Operator }

func (slowBroker) PublishSystem(ctx context.Context, _, _, _ string) (broker.Published, *protocol.Error) {
	<-ctx.Done()
	return broker.Published{}, &protocol.Error{Code: protocol.CodeUnavailable, Message: "gave up"}
}

// TestTimeout: a request the broker cannot carry out within --api-timeout
// is answered 503 unavailable then, not held.
func TestTimeout(t *testing.T) {
	e := newEnv(t, func(c *api.Config, d *api.Deps) {
		c.Timeout = 200 * time.Millisecond
		d.Broker = slowBroker{d.Broker}
	})
	start := time.Now()
	r := e.do(keyPublish, "POST", "/v1/publish", `{"room":"r","text":"x"}`)
	if r.status != 503 || r.code() != "unavailable" || r.header.Get("Retry-After") == "" {
		t.Fatalf("a publish the broker holds: %d %s; want 503 unavailable", r.status, r.raw)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("answered after %v; want about --api-timeout", took)
	}
}

// TestMetricsAndSpans: every request is counted once under its endpoint
// and result and is one server span, carrying the trace context the
// caller sent; no key shows up in the log.
func TestMetricsAndSpans(t *testing.T) {
	e := newEnv(t, nil)
	e.do(keyPublish, "POST", "/v1/publish", `{"room":"r","text":"x"}`)
	e.do("", "GET", "/v1/rooms", "")
	e.do(keyRead, "POST", "/v1/publish", `{"room":"r","text":"x"}`)
	e.do(keyRead, "GET", "/v1/nope", "")
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/rooms/r/history", nil)
	req.Header.Set("Authorization", "Bearer "+keyRead)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	e.send(req)
	want := []metricCall{
		{observe.APIPublish, "ok"},
		{observe.APIRooms, "unauthorized"},
		{observe.APIPublish, "forbidden"},
		{observe.APIOther, "not_found"},
		{observe.APIHistory, "ok"},
	}
	if got := e.metrics.take(); !slices.Equal(got, want) {
		t.Fatalf("metrics %v; want %v", got, want)
	}
	spans := e.spans.Ended()
	if len(spans) != len(want) {
		t.Fatalf("%d spans; want one per request (%d)", len(spans), len(want))
	}
	for i, s := range spans {
		if s.Name() != "chatgate.api."+string(want[i].endpoint) {
			t.Errorf("span %d is %q; want chatgate.api.%s", i, s.Name(), want[i].endpoint)
		}
		var outcome string
		for _, a := range s.Attributes() {
			if a.Key == "chatgate.outcome" {
				outcome = a.Value.AsString()
			}
		}
		if outcome != want[i].result {
			t.Errorf("span %d outcome %q; want %q", i, outcome, want[i].result)
		}
	}
	if got := spans[4].Parent().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("the history span's parent trace is %s; want the caller's", got)
	}
	if log := e.log.String(); strings.Contains(log, keyPublish) || strings.Contains(log, keyRead) {
		t.Fatal("a key appears in the log")
	}
}

// TestClient: the Go client sends what the server reads and reads what it
// answers, and returns the API's errors as *api.Error with their status.
func TestClient(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	c, err := api.NewClient(e.srv.URL, keyAll, e.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	s := newSub("alice")
	e.join(s, "lobby")
	p, err := c.Publish(ctx, api.PublishRequest{Room: "lobby", Text: "hi", Sender: "Bot"})
	if err != nil || p.Seq == 0 {
		t.Fatalf("Publish: %+v, %v", p, err)
	}
	b, err := c.PublishBatch(ctx, []api.PublishRequest{{Room: "lobby", Text: "a"}, {Room: "bad room", Text: "b"}})
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Code != protocol.CodeInvalidRoom || len(b.Results) != 0 {
		t.Fatalf("PublishBatch with a bad room: %+v, %v; want a 400 invalid_room *api.Error", b, err)
	}
	h, err := c.History(ctx, "lobby", nil, 10)
	if err != nil || len(h.Messages) != 1 || h.Seq != p.Seq {
		t.Fatalf("History: %+v, %v", h, err)
	}
	pr, err := c.Presence(ctx, "lobby")
	if err != nil || pr.Online != 1 || pr.Users[0].ID != "alice" {
		t.Fatalf("Presence: %+v, %v", pr, err)
	}
	rooms, err := c.Rooms(ctx, "", 10)
	if err != nil || len(rooms.Rooms) != 1 || rooms.Rooms[0] != (api.RoomCount{Room: "lobby", Online: 1, Connections: 1}) {
		t.Fatalf("Rooms: %+v, %v", rooms, err)
	}
	d, err := c.Disconnect(ctx, api.DisconnectRequest{User: "alice", Ban: &api.BanSpec{Room: "lobby", Seconds: 30}})
	if err != nil || d.Ban == nil || d.Ban.Room != "lobby" {
		t.Fatalf("Disconnect: %+v, %v", d, err)
	}
	if err := c.Unban(ctx, api.UnbanRequest{Room: "lobby", User: "alice"}); err != nil {
		t.Fatalf("Unban: %v", err)
	}
	if _, err := c.Ban(ctx, api.BanRequest{Room: "lobby", User: "alice", Seconds: 30}); err != nil {
		t.Fatalf("Ban: %v", err)
	}
	reader, _ := api.NewClient(e.srv.URL, keyRead, e.srv.Client())
	if _, err := reader.Publish(ctx, api.PublishRequest{Room: "lobby", Text: "x"}); !errors.As(err, &apiErr) || apiErr.Status != 403 || apiErr.Code != protocol.CodeForbidden {
		t.Fatalf("Publish without the scope: %v; want a 403 forbidden *api.Error", err)
	}
}
