package main

// End-to-end tests of the server API (docs/api.md) against the real
// binary: a single node, and two replicas sharing rooms through an
// embedded NATS server. What a backend does through the API must be what
// clients see, on every replica.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/api"
	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/gatewaytest"
	"github.com/chatgate/chatgate/internal/natstest"
	"github.com/chatgate/chatgate/internal/wstest"
)

const (
	e2eSecret   = "0123456789abcdef0123456789abcdef-e2e-only"
	e2eKeyAll   = "backend-0123456789abcdef0123456789abcdef"
	e2eKeyRead  = "reader-0123456789abcdef0123456789abcdef"
	e2eKeysJSON = `{"keys":[
		{"name":"backend","key":"` + e2eKeyAll + `","scopes":["publish","moderate","read"]},
		{"name":"reader","key":"` + e2eKeyRead + `","scopes":["read"]}]}`
)

// apiCluster is one or more gateway replicas serving the API.
type apiCluster struct {
	bin      string
	keysFile string
	procs    []*gatewaytest.Proc
	clients  []*api.Client // one per replica, with the backend key
}

// startAPICluster starts n replicas (n > 1: over an embedded NATS server)
// with --auth jwt and the server API.
func startAPICluster(t *testing.T, bin string, n int) *apiCluster {
	t.Helper()
	dir := t.TempDir()
	keys, secret := filepath.Join(dir, "keys.json"), filepath.Join(dir, "secret")
	for file, content := range map[string]string{keys: e2eKeysJSON, secret: e2eSecret} {
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &apiCluster{bin: bin, keysFile: keys}
	args := []string{
		"--auth", "jwt", "--jwt-secret-file", secret,
		"--api-addr", "127.0.0.1:0", "--api-keys-file", keys,
		"--send-rate", "1000", "--send-burst", "1000", "--presence-interval", "50ms",
		"--drain-delay", "0s", "--drain-window", "0s", "--drain-linger", "0s",
	}
	if n > 1 {
		nats := natstest.Start(t, "api-e2e")
		args = append(args, "--backplane", nats.URL(), "--stream-replicas", "1", "--presence-sync", "500ms", "--presence-ttl", "2s")
	}
	for i := range n {
		p := gatewaytest.Start(t, bin, append(slices.Clone(args), "--node-id", "replica-"+strconv.Itoa(i))...)
		if p.APIAddr == "" {
			t.Fatal("the gateway did not log its api_addr")
		}
		waitReady(t, p)
		cl, err := api.NewClient("http://"+p.APIAddr, e2eKeyAll, &http.Client{Timeout: waitTimeout})
		if err != nil {
			t.Fatal(err)
		}
		c.procs = append(c.procs, p)
		c.clients = append(c.clients, cl)
	}
	if n > 1 {
		// The replicas know each other (their census) once each one's
		// presence answer lists a user of every replica.
		var probes []string
		for i := range n {
			id := "probe-" + strconv.Itoa(i)
			c.dial(t, i, id).JoinSince("api-probe", nil)
			probes = append(probes, id)
		}
		for i := range n {
			eventually(t, fmt.Sprintf("replica %d to hear every replica", i), func() error {
				p, err := c.api(i).Presence(context.Background(), "api-probe")
				if err != nil {
					return err
				}
				var ids []string
				for _, u := range p.Users {
					ids = append(ids, u.ID)
				}
				if !slices.Equal(ids, probes) {
					return fmt.Errorf("presence lists %v; want %v", ids, probes)
				}
				return nil
			})
		}
	}
	return c
}

func waitReady(t *testing.T, p *gatewaytest.Proc) {
	t.Helper()
	for deadline := time.Now().Add(waitTimeout); p.Status(statusClient, "/readyz") != http.StatusOK; {
		if time.Now().After(deadline) {
			t.Fatal("/readyz never succeeded")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dial connects user to replica i, reading in the background.
func (c *apiCluster) dial(t *testing.T, i int, user string) *wstest.Client {
	t.Helper()
	tok, err := auth.Mint([]byte(e2eSecret), user, "name-"+user, nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return wstest.Dial(t, "ws://"+c.procs[i%len(c.procs)].ChatAddr+"/ws", wstest.Options{
		Header: http.Header{"Authorization": {"Bearer " + tok}}, Background: true, Welcome: true, Timeout: waitTimeout,
	})
}

// api returns the API client of replica i.
func (c *apiCluster) api(i int) *api.Client { return c.clients[i%len(c.clients)] }

// eventually polls check until it returns nil, or fails the test.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// joinAll joins every client to room and waits until each sees all of
// them in its presence view, so that every later message has them all as
// members.
func joinAll(t *testing.T, room string, clients ...*wstest.Client) {
	t.Helper()
	users := map[string]bool{}
	for _, c := range clients {
		c.JoinSince(room, nil)
		users[c.UserID()] = true
	}
	for _, c := range clients {
		c.WaitFor("every member in "+room, func(envs []wstest.Env) bool {
			set, _ := wstest.Members(envs, room)
			return maps.Equal(set, users)
		})
	}
}

// TestServerAPI runs the server API end to end on one node and on two
// replicas.
func TestServerAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := gatewaytest.Build(t)
	for _, topo := range []struct {
		name     string
		replicas int
	}{{"single node", 1}, {"two replicas", 2}} {
		t.Run(topo.name, func(t *testing.T) {
			c := startAPICluster(t, bin, topo.replicas)
			t.Run("publish reaches every member once in order", func(t *testing.T) { testAPIPublish(t, c) })
			t.Run("presence and history agree with clients", func(t *testing.T) { testAPIReads(t, c) })
			t.Run("kick closes every connection and bans hold", func(t *testing.T) { testAPIKick(t, c) })
			t.Run("bad keys and requests are refused", func(t *testing.T) { testAPIRefusals(t, c) })
			t.Run("chatgate api", func(t *testing.T) { testAPICommand(t, c) })
			t.Run("the drain stops the API", func(t *testing.T) { testAPIDrain(t, c) })
		})
	}
}

// testAPIPublish: while a member sends, system messages published through
// every replica (single and batch) reach every member on every replica
// exactly once, in the one order of the room, marked as the system
// sender's and with the seq the API answered.
func testAPIPublish(t *testing.T, c *apiCluster) {
	const room, other = "api-pub", "api-pub-other"
	var members []*wstest.Client
	for i := range 4 {
		members = append(members, c.dial(t, i, "m"+strconv.Itoa(i)))
	}
	joinAll(t, room, members...)
	watcher := c.dial(t, 1, "watcher")
	watcher.JoinSince(other, nil)

	ctx := context.Background()
	const sent, single, batched = 20, 20, 10
	done := make(chan error, 1)
	go func() {
		for n := range sent {
			if err := members[0].TrySend(map[string]any{"type": "send", "room": room, "text": "member " + strconv.Itoa(n), "ref": strconv.Itoa(n)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var apiSeqs []uint64
	for n := range single {
		r, err := c.api(n).Publish(ctx, api.PublishRequest{Room: room, Text: "system " + strconv.Itoa(n), Sender: "Ops"})
		if err != nil {
			t.Fatalf("publish %d through replica %d: %v", n, n%len(c.procs), err)
		}
		apiSeqs = append(apiSeqs, r.Seq)
	}
	var batch []api.PublishRequest
	for n := range batched {
		batch = append(batch, api.PublishRequest{Room: room, Text: "batch " + strconv.Itoa(n), Sender: "Bot"})
	}
	batch = append(batch, api.PublishRequest{Room: other, Text: "elsewhere"})
	br, err := c.api(1).PublishBatch(ctx, batch)
	if err != nil || len(br.Results) != len(batch) {
		t.Fatalf("batch: %+v, %v", br, err)
	}
	for i, r := range br.Results {
		if r.Error != nil || r.Seq == 0 || r.Room != batch[i].Room {
			t.Fatalf("batch result %d: %+v", i, r)
		}
		if r.Room == room {
			apiSeqs = append(apiSeqs, r.Seq)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	total := sent + single + batched
	var order []uint64
	for _, m := range members {
		m.WaitFor("every message", func(envs []wstest.Env) bool { return len(wstest.Messages(envs, room)) >= total })
		msgs := wstest.Messages(m.Snapshot(), room)
		seqs := wstest.Seqs(m.Snapshot(), room)
		if len(msgs) != total || !slices.IsSorted(seqs) || len(slices.Compact(slices.Clone(seqs))) != total {
			t.Fatalf("%s got %d messages with seqs %v; want %d, increasing, each once", m.UserID(), len(msgs), seqs, total)
		}
		if order == nil {
			order = seqs
		} else if !slices.Equal(order, seqs) {
			t.Fatalf("%s got the room in another order than %s", m.UserID(), members[0].UserID())
		}
		var sys []uint64
		memberN := 0
		for _, e := range msgs {
			from, _ := e["from"].(map[string]any)
			if e["system"] == true {
				if from["id"] != protocol.SystemSenderID || (from["name"] != "Ops" && from["name"] != "Bot") {
					t.Fatalf("%s: a system message from %v", m.UserID(), from)
				}
				sys = append(sys, e.U64("seq"))
				continue
			}
			if from["id"] != "m0" || e.Str("text") != "member "+strconv.Itoa(memberN) {
				t.Fatalf("%s: %v; want member %d from m0", m.UserID(), e, memberN)
			}
			memberN++
		}
		if !slices.Equal(sys, apiSeqs) {
			t.Fatalf("%s got system messages %v; the API answered %v", m.UserID(), sys, apiSeqs)
		}
	}
	watcher.WaitFor("the batch's message to another room", func(envs []wstest.Env) bool {
		msgs := wstest.Messages(envs, other)
		return len(msgs) == 1 && msgs[0].Str("text") == "elsewhere"
	})
}

// testAPIReads: the history the API returns, through any replica, is the
// room's messages as a member received them; presence and the room list
// are the members as clients see them, and follow a departure.
func testAPIReads(t *testing.T, c *apiCluster) {
	const room = "api-reads"
	alice1, alice2, bob, carol := c.dial(t, 0, "alice"), c.dial(t, 1, "alice"), c.dial(t, 1, "bob"), c.dial(t, 0, "carol")
	joinAll(t, room, alice1, alice2, bob, carol)
	ctx := context.Background()
	for n := range 5 {
		if res := bob.SendWait(room, "from bob "+strconv.Itoa(n), "b"+strconv.Itoa(n)); res.Seq == 0 {
			t.Fatalf("bob's send: %+v", res)
		}
		if _, err := c.api(n).Publish(ctx, api.PublishRequest{Room: room, Text: "notice " + strconv.Itoa(n)}); err != nil {
			t.Fatal(err)
		}
	}
	carol.WaitFor("every message", func(envs []wstest.Env) bool { return len(wstest.Messages(envs, room)) == 10 })
	received := wstest.Messages(carol.Snapshot(), room)
	for i := range c.procs {
		h, err := c.api(i).History(ctx, room, nil, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Messages) != len(received) || h.Seq != received[len(received)-1].U64("seq") {
			t.Fatalf("replica %d's history: %d messages up to seq %d; carol received %d up to %d", i, len(h.Messages), h.Seq, len(received), received[len(received)-1].U64("seq"))
		}
		for j, raw := range h.Messages {
			var got wstest.Env
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(got, received[j]) {
				t.Fatalf("replica %d's history message %d is %s; carol received %v", i, j, raw, received[j])
			}
		}
		since := received[5].U64("seq")
		h, err = c.api(i).History(ctx, room, &since, 2)
		if err != nil || len(h.Messages) != 2 || !h.Truncated || h.Recovered == nil || !*h.Recovered {
			t.Fatalf("replica %d's history after %d, limit 2: %+v, %v", i, since, h, err)
		}
	}
	checkPresence := func(want map[string]int) {
		t.Helper()
		for i := range c.procs {
			eventually(t, fmt.Sprintf("replica %d's presence of %s", i, room), func() error {
				p, err := c.api(i).Presence(ctx, room)
				if err != nil {
					return err
				}
				got := map[string]int{}
				conns := 0
				for _, u := range p.Users {
					got[u.ID] = u.Connections
					conns += u.Connections
					if u.Name != "name-"+u.ID {
						return fmt.Errorf("user %s is named %q", u.ID, u.Name)
					}
				}
				if !maps.Equal(got, want) || p.Online != len(want) || p.Connections != conns {
					return fmt.Errorf("presence %+v; want users and connections %v", p, want)
				}
				return nil
			})
			rooms, err := c.api(i).Rooms(ctx, room[:len(room)-1], 1) // the page that starts at room
			if err != nil {
				t.Fatal(err)
			}
			conns := 0
			for _, n := range want {
				conns += n
			}
			if len(rooms.Rooms) < 1 || rooms.Rooms[0] != (api.RoomCount{Room: room, Online: len(want), Connections: conns}) {
				t.Fatalf("replica %d's room list %+v; want %s with %d users and %d connections first", i, rooms.Rooms, room, len(want), conns)
			}
		}
		// And the clients see the same users.
		ids := slices.Sorted(maps.Keys(want))
		carol.WaitFor("the same members", func(envs []wstest.Env) bool {
			set, online := wstest.Members(envs, room)
			return slices.Equal(slices.Sorted(maps.Keys(set)), ids) && online == len(ids)
		})
	}
	checkPresence(map[string]int{"alice": 2, "bob": 1, "carol": 1})
	alice2.Close()
	bob.Close()
	checkPresence(map[string]int{"alice": 1, "carol": 1})
}

// jsonEqual compares two decoded JSON values.
func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// testAPIKick: a disconnect of a user through one replica closes every
// connection of theirs on every replica with 4403; its ban keeps them out
// of the room on every replica while others stay; a disconnect of one
// connection closes that one; unban lets them back.
func testAPIKick(t *testing.T, c *apiCluster) {
	const room, free = "api-mod", "api-free"
	ctx := context.Background()
	alice := []*wstest.Client{c.dial(t, 0, "alice"), c.dial(t, 0, "alice"), c.dial(t, 1, "alice")}
	bob := c.dial(t, 1, "bob")
	joinAll(t, room, append(slices.Clone(alice), bob)...)

	d, err := c.api(0).Disconnect(ctx, api.DisconnectRequest{User: "alice", Ban: &api.BanSpec{Room: room, Seconds: 600}})
	if err != nil || d.Ban == nil {
		t.Fatalf("disconnect: %+v, %v", d, err)
	}
	if d.Disconnected != len(alice) {
		t.Fatalf("disconnect answered %d connections closed; alice had %d", d.Disconnected, len(alice))
	}
	for i, a := range alice {
		if code := a.WaitClosed(); code != protocol.CloseKicked {
			t.Fatalf("alice's connection %d closed with %d; want %d", i, code, protocol.CloseKicked)
		}
	}
	if closed, _ := bob.Closed(); closed {
		t.Fatal("bob was disconnected too")
	}
	bob.WaitFor("alice to leave", func(envs []wstest.Env) bool {
		set, _ := wstest.Members(envs, room)
		return !set["alice"] && set["bob"]
	})
	if res := bob.SendWait(room, "still here", "after-kick"); res.Seq == 0 {
		t.Fatalf("bob's send after the kick: %+v", res)
	}

	// The ban holds on every replica; other rooms are open to her.
	var back []*wstest.Client
	for i := range c.procs {
		a := c.dial(t, i, "alice")
		back = append(back, a)
		a.Send(map[string]any{"type": "join", "room": room, "ref": "j"})
		e := a.WaitEnv("the answer to the join", func(e wstest.Env) bool { return e.Str("ref") == "j" })
		if e.Type() != "error" || e.Str("code") != string(protocol.CodeForbidden) || e.U64("retry_after_ms") < 590_000 {
			t.Fatalf("alice's join on replica %d while banned: %v; want forbidden with retry_after_ms near 600000", i, e)
		}
		if j := a.JoinSince(free, nil); j.Str("room") != free {
			t.Fatalf("alice's join of another room on replica %d: %v", i, j)
		}
	}

	// One connection: only that one closes.
	last := back[len(back)-1]
	d, err = c.api(0).Disconnect(ctx, api.DisconnectRequest{Conn: last.Welcome().Str("conn")})
	if err != nil || d.Disconnected != 1 {
		t.Fatalf("disconnect of one connection: %+v, %v", d, err)
	}
	if code := last.WaitClosed(); code != protocol.CloseKicked {
		t.Fatalf("the named connection closed with %d", code)
	}
	if closed, _ := back[0].Closed(); closed && len(back) > 1 {
		t.Fatal("alice's other connection was closed too")
	}

	if err := c.api(len(c.procs)-1).Unban(ctx, api.UnbanRequest{Room: room, User: "alice"}); err != nil {
		t.Fatal(err)
	}
	for i := range c.procs {
		a := c.dial(t, i, "alice")
		eventually(t, fmt.Sprintf("alice let back in on replica %d", i), func() error {
			ref := "again-" + strconv.FormatInt(time.Now().UnixNano(), 10)
			a.Send(map[string]any{"type": "join", "room": room, "ref": ref})
			e := a.WaitEnv("the answer", func(e wstest.Env) bool {
				return e.Str("ref") == ref || (e.Type() == "joined" && e.Str("room") == room)
			})
			if e.Type() != "joined" {
				return fmt.Errorf("join: %v", e)
			}
			return nil
		})
	}
}

// testAPIRefusals: every replica refuses a missing or unknown key (401), a
// key without the scope (403), and oversized or malformed requests, with
// the API's JSON errors, and publishes nothing for them.
func testAPIRefusals(t *testing.T, c *apiCluster) {
	const room = "api-refused"
	big := strings.Repeat("x", api.DefaultMaxBodyBytes)
	var tooMany []string
	for range api.MaxBatch + 1 {
		tooMany = append(tooMany, `{"room":"`+room+`","text":"x"}`)
	}
	cases := []struct {
		name         string
		key          string
		method, path string
		body         string
		status       int
		code         string
	}{
		{"no key", "", "POST", "/v1/publish", `{"room":"` + room + `","text":"x"}`, 401, "unauthorized"},
		{"unknown key", "nope-0123456789abcdef0123456789abcdef", "POST", "/v1/publish", `{"room":"` + room + `","text":"x"}`, 401, "unauthorized"},
		{"a chat token", "", "POST", "/v1/publish", `{"room":"` + room + `","text":"x"}`, 401, "unauthorized"},
		{"read key publishing", e2eKeyRead, "POST", "/v1/publish", `{"room":"` + room + `","text":"x"}`, 403, "forbidden"},
		{"read key kicking", e2eKeyRead, "POST", "/v1/disconnect", `{"user":"bob"}`, 403, "forbidden"},
		{"oversized body", e2eKeyAll, "POST", "/v1/publish", `{"room":"` + room + `","text":"` + big + `"}`, 413, "too_large"},
		{"text over --max-text-bytes", e2eKeyAll, "POST", "/v1/publish", `{"room":"` + room + `","text":"` + strings.Repeat("t", 4097) + `"}`, 413, "too_large"},
		{"malformed JSON", e2eKeyAll, "POST", "/v1/publish", `{"room":"` + room + `","text":`, 400, "bad_request"},
		{"unknown field", e2eKeyAll, "POST", "/v1/publish", `{"room":"` + room + `","txt":"x"}`, 400, "bad_request"},
		{"invalid room", e2eKeyAll, "POST", "/v1/publish", `{"room":"a room","text":"x"}`, 400, "invalid_room"},
		{"batch over the limit", e2eKeyAll, "POST", "/v1/publish/batch", `{"messages":[` + strings.Join(tooMany, ",") + `]}`, 413, "too_large"},
		{"unknown endpoint", e2eKeyAll, "GET", "/v1/secrets", "", 404, "not_found"},
	}
	tok, err := auth.Mint([]byte(e2eSecret), "mallory", "", nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cases[2].key = tok
	for i, p := range c.procs {
		for _, tc := range cases {
			req, _ := http.NewRequest(tc.method, "http://"+p.APIAddr+tc.path, strings.NewReader(tc.body))
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			resp, err := statusClient.Do(req)
			if err != nil {
				t.Fatalf("replica %d, %s: %v", i, tc.name, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var eb struct {
				Error *api.Error `json:"error"`
			}
			if resp.StatusCode != tc.status || json.Unmarshal(body, &eb) != nil || eb.Error == nil || string(eb.Error.Code) != tc.code || eb.Error.Message == "" {
				t.Fatalf("replica %d, %s: %d %s; want %d with a JSON error %s and a message", i, tc.name, resp.StatusCode, body, tc.status, tc.code)
			}
		}
	}
	h, err := c.api(0).History(context.Background(), room, nil, 10)
	if err != nil || len(h.Messages) != 0 {
		t.Fatalf("refused requests published: %+v, %v", h, err)
	}
}

// testAPICommand: `chatgate api` publishes, reads and kicks through the
// API, prints its JSON answers, and exits 1 with the API's error or 2 for
// a usage mistake.
func testAPICommand(t *testing.T, c *apiCluster) {
	const room = "api-cli"
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(e2eKeyAll+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	member := c.dial(t, len(c.procs)-1, "dave")
	member.JoinSince(room, nil)
	run := func(key string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(c.bin, append([]string{"api", "--url", "http://" + c.procs[0].APIAddr, "--key-file", key}, args...)...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
	}
	out, errOut, code := run(keyFile, "publish", room, "hello", "from", "the", "cli", "--sender", "CLI")
	var pub api.PublishResult
	if code != 0 || json.Unmarshal([]byte(out), &pub) != nil || pub.Seq == 0 {
		t.Fatalf("publish: exit %d, %q %q", code, out, errOut)
	}
	m := member.WaitEnv("the CLI's message", func(e wstest.Env) bool { return e.Type() == "message" && e.Str("room") == room })
	if m.Str("text") != "hello from the cli" || m.U64("seq") != pub.Seq || m["system"] != true {
		t.Fatalf("dave got %v; want the CLI's text with seq %d", m, pub.Seq)
	}
	out, _, code = run(keyFile, "history", room, "--limit", "5")
	var h api.HistoryResponse
	if code != 0 || json.Unmarshal([]byte(out), &h) != nil || len(h.Messages) != 1 {
		t.Fatalf("history: exit %d, %q", code, out)
	}
	out, _, code = run(keyFile, "presence", room)
	var p api.PresenceResponse
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.Online != 1 || p.Users[0].ID != "dave" {
		t.Fatalf("presence: exit %d, %q", code, out)
	}
	out, _, code = run(keyFile, "kick", "dave", "--ban-room", room, "--ban-for", "1m")
	var d api.DisconnectResponse
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || d.Disconnected != 1 || d.Ban == nil || d.Ban.Room != room {
		t.Fatalf("kick: exit %d, %q", code, out)
	}
	if got := member.WaitClosed(); got != protocol.CloseKicked {
		t.Fatalf("dave closed with %d; want %d", got, protocol.CloseKicked)
	}
	wrongKey := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrongKey, []byte("wrong-0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run(wrongKey, "rooms"); code != 1 || !strings.Contains(errOut, "unauthorized") {
		t.Fatalf("a wrong key: exit %d, %q; want 1 and unauthorized", code, errOut)
	}
	if _, errOut, code := run(keyFile, "shout", room); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("an unknown command: exit %d, %q; want 2", code, errOut)
	}
}

// testAPIDrain: on SIGTERM the API stops taking requests with the chat
// listener, and the gateway still exits cleanly.
func testAPIDrain(t *testing.T, c *apiCluster) {
	for i, p := range c.procs {
		if _, err := c.api(i).Rooms(context.Background(), "", 1); err != nil {
			t.Fatalf("replica %d before the drain: %v", i, err)
		}
		if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		eventually(t, fmt.Sprintf("replica %d's API to stop", i), func() error {
			conn, err := net.DialTimeout("tcp", p.APIAddr, time.Second)
			if err == nil {
				conn.Close()
				return errors.New("the API listener still accepts")
			}
			return nil
		})
		select {
		case <-p.Exited:
			if err := p.ExitErr(); err != nil {
				t.Fatalf("replica %d exited with %v after the drain; want 0", i, err)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("replica %d did not exit after SIGTERM", i)
		}
	}
}
