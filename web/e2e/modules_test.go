package e2e

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// moduleChecks loads the page and runs a script that imports the page's
// own modules and returns a list of failures.
func moduleChecks(t *testing.T, name, script string) {
	t.Helper()
	g := startGateway(t, testConfig("gw-"+name), "gateway.log", nil)
	p := newPage(t, name)
	p.do("loading the page", chromedp.Navigate(g.url()), chromedp.WaitVisible(chromedp.ID("welcome-name")))
	for _, f := range eval[[]string](p, `(async () => {
	  const bad = [];
	  const check = (name, got, want) => {
	    const s = (v) => JSON.stringify(v, (k, x) => typeof x === 'bigint' ? x.toString() + 'n' : x instanceof Set ? [...x] : x);
	    if (s(got) !== s(want)) bad.push(name + ': got ' + s(got) + ', want ' + s(want));
	  };
	  `+script+`
	  return bad;
	})()`) {
		t.Error(f)
	}
}

// The send queue (static/js/sendqueue.js) with a fake clock: one message
// per room on the wire, sends paced by both announced buckets (plus the
// margin), a refused message sent again after retry_after_ms before
// anything written after it, the shared bucket kept across a reconnect,
// and each way an unconfirmed message can end.
func TestSendQueueRules(t *testing.T) {
	moduleChecks(t, "sendqueue", `
	  const q = await import('/js/sendqueue.js');
	  const M = q.PACE_MARGIN_MS;
	  const setup = (limits) => {
	    const h = {now: 0, timers: new Map(), next: 1, wire: [], failed: [], holds: [], ready: new Set(['a', 'b']), online: true};
	    const clock = {
	      now: () => h.now,
	      setTimeout: (fn, ms) => { const id = h.next++; h.timers.set(id, {at: h.now + ms, fn}); return id; },
	      clearTimeout: (id) => h.timers.delete(id),
	    };
	    h.advance = (ms) => {
	      const end = h.now + ms;
	      for (;;) {
	        let first = null;
	        for (const [id, tm] of h.timers) if (tm.at <= end && (first === null || tm.at < first[1].at)) first = [id, tm];
	        if (first === null) break;
	        h.timers.delete(first[0]);
	        h.now = first[1].at;
	        first[1].fn();
	      }
	      h.now = end;
	    };
	    h.q = new q.SendQueue({
	      transmit: (item) => { if (!h.online) return false; h.wire.push(item); return true; },
	      ready: (room) => h.ready.has(room),
	      onChange: () => {},
	      onSettled: () => {},
	      onFailed: (item) => h.failed.push(item.text + (item.resend ? ' (send again)' : ' (edit)')),
	      onHold: (hold) => h.holds.push(hold && {in: hold.until - h.now, byServer: hold.byServer}),
	    }, clock);
	    h.q.connected('u1', q.sendLimits(limits));
	    h.sent = () => h.wire.map((i) => i.room + ':' + i.text);
	    h.ackAll = () => { for (const i of h.wire) h.q.acked(i.ref); };
	    return h;
	  };
	  const none = {};

	  check('limits read', q.sendLimits({send_per_sec: 0.5, send_burst: 2, shared_send_per_sec: 1, shared_send_burst: 4}),
	    {rate: 0.5, burst: 2, sharedRate: 1, sharedBurst: 4});
	  check('bad limits ignored', q.sendLimits({send_per_sec: -1, send_burst: 1.5, shared_send_per_sec: 'x'}),
	    {rate: null, burst: null, sharedRate: null, sharedBurst: null});

	  // One message per room on the wire; rooms do not wait for each other.
	  let h = setup(none);
	  for (const [r, x] of [['a', '1'], ['a', '2'], ['b', '1']]) h.q.add(r, x);
	  check('one per room', h.sent(), ['a:1', 'b:1']);
	  h.q.acked(h.wire[0].ref);
	  check('next after the ack', h.sent(), ['a:1', 'b:1', 'a:2']);
	  check('echo settles', h.q.echoed('a', 'u1', '2'), true);
	  check('echo of someone else does not', h.q.echoed('b', 'u2', '1'), false);
	  check('left', h.q.items.map((i) => i.room + ':' + i.text + ':' + i.state), ['b:1:sending']);
	  h.q.add('c', 'x');
	  check('a room not joined waits', h.sent().includes('c:x'), false);
	  h.ready.add('c');
	  h.q.flush();
	  check('sent once joined', h.sent().includes('c:x'), true);

	  // Paced by the connection's bucket: 2 at once, then one a second (each
	  // ack after 1 ms).
	  h = setup({send_per_sec: 1, send_burst: 2, shared_send_per_sec: 100, shared_send_burst: 100});
	  const times = [];
	  h.q.io.transmit = (item) => {
	    times.push(h.now);
	    h.wire.push(item);
	    h.q.clock.setTimeout(() => h.q.acked(item.ref), 1);
	    return true;
	  };
	  for (let i = 1; i <= 4; i++) h.q.add('a', String(i));
	  h.advance(5000);
	  const ms10 = (x) => Math.round(x / 10) * 10; // token arithmetic is in floating point
	  check('paced sends', times.map(ms10), [0, 0, 1000 + M, 2000 + M]);
	  const hold = h.holds.find(Boolean);
	  check('the pacing wait held', {in: ms10(hold.in), byServer: hold.byServer}, {in: 1000 + M, byServer: false});

	  // Paced by the shared bucket too, which a reconnect does not refill.
	  h = setup({send_per_sec: 100, send_burst: 100, shared_send_per_sec: 1, shared_send_burst: 2});
	  h.q.add('a', '1'); h.ackAll(); h.q.add('a', '2'); h.ackAll();
	  h.q.disconnected({});
	  h.q.connected('u2', q.sendLimits({send_per_sec: 100, send_burst: 100, shared_send_per_sec: 1, shared_send_burst: 2}));
	  h.q.add('a', '3');
	  check('shared bucket empty after the reconnect', h.sent(), ['a:1', 'a:2']);
	  h.advance(1000 + M);
	  check('then one a second', h.sent(), ['a:1', 'a:2', 'a:3']);
	  check('the new connection id', h.wire[2].userId, 'u2');

	  // A refusal: the message waits retry_after_ms (plus the margin) and
	  // goes again before the one written after it.
	  h = setup({send_per_sec: 10, send_burst: 10, shared_send_per_sec: 20, shared_send_burst: 20});
	  h.q.add('a', '1'); h.q.add('a', '2'); h.q.add('b', 'x');
	  check('refused', h.q.refused(h.wire[0].ref, 'rate_limited', 700, 'slow down'), {action: 'wait', room: 'a'});
	  check('waiting, in order', h.q.items.map((i) => i.text + ':' + i.state), ['1:retrying', '2:queued', 'x:sending']);
	  check('the hold', h.holds[h.holds.length - 1], {in: 700 + M, byServer: true});
	  h.advance(700 + M - 1);
	  check('not before retry_after_ms', h.sent(), ['a:1', 'b:x']);
	  h.advance(1);
	  check('sent again', h.sent(), ['a:1', 'b:x', 'a:1']);
	  h.q.acked(h.wire[2].ref);
	  h.advance(M);
	  check('then the next one', h.sent(), ['a:1', 'b:x', 'a:1', 'a:2']);
	  check('nothing failed', h.failed, []);
	  check('an unknown ref', h.q.refused('s999', 'rate_limited', 10, ''), null);

	  // A dropped connection: what was on the wire is unknown until the
	  // replay; recovered (or drained) → sent again, else it may have been
	  // delivered: given up, to be sent again by the user.
	  h = setup(none);
	  h.q.add('a', '1'); h.q.add('b', '1'); h.q.add('a', '2');
	  h.q.disconnected({});
	  check('unknown', h.q.items.map((i) => i.state), ['unknown', 'unknown', 'queued']);
	  h.q.connected('u2', q.sendLimits(none));
	  check('nothing goes while unknown', h.sent(), ['a:1', 'b:1']);
	  h.q.replayed('a', true);
	  check('not in a complete replay: sent again, first', h.sent(), ['a:1', 'b:1', 'a:1']);
	  h.q.replayed('b', false);
	  check('not in an incomplete replay: given up', h.failed, ['1 (send again)']);
	  h.q.echoed('a', 'u2', '1');
	  check('the next one', h.sent(), ['a:1', 'b:1', 'a:1', 'a:2']);
	  h.q.disconnected({drained: true});
	  h.q.connected('u3', q.sendLimits(none));
	  h.q.replayed('a', false);
	  check('a drain wrote every ack: sent again', h.sent().length, 5);
	  h.q.disconnected({clientFault: true});
	  check('closed for our fault: given up', h.failed, ['1 (send again)', '2 (edit)']);

	  // Errors.
	  h = setup(none);
	  h.q.add('a', '1'); h.q.add('a', '2');
	  check('unavailable: check the replay', h.q.refused(h.wire[0].ref, 'unavailable', 1000, ''), {action: 'check', room: 'a'});
	  check('unknown meanwhile', h.q.items[0].state, 'unknown');
	  h.q.replayed('a', true);
	  check('not stored: sent again', h.sent(), ['a:1', 'a:1']);
	  check('not joined: rejoin', h.q.refused(h.wire[1].ref, 'not_joined', null, ''), {action: 'rejoin', room: 'a'});
	  h.q.flush();
	  check('too large: given up, the next goes', h.q.refused(h.wire[2].ref, 'too_large', null, 'too long'), {action: 'failed', room: 'a'});
	  check('given up', h.failed, ['1 (edit)']);
	  check('the next one went', h.sent(), ['a:1', 'a:1', 'a:1', 'a:2']);
	  h.q.add('b', 'x'); h.q.dropRoom('b');
	  check('left room dropped', h.q.items.map((i) => i.room), ['a']);

	  // The bucket mirror.
	  const b = new q.TokenBucket(2, 4, 0);
	  b.take(0); b.take(0); b.take(0); b.take(0);
	  check('empty', b.waitMs(0), 500);
	  check('refills', b.level(1000), 2);
	  check('caps', b.level(10000), 4);
	  b.oneAt(1000, 1500);
	  check('a refusal lowers it', b.waitMs(1000), 500);
	  b.oneAt(1000, 1100);
	  check('never raises it', b.waitMs(1000), 500);
	  b.resize(1, 2, 1000);
	  check('resize keeps the level', b.waitMs(1000), 1000);
	`)
}

// @mention matching (static/js/mentions.js).
func TestMentionMatcher(t *testing.T) {
	moduleChecks(t, "mentions", `
	  const {mentionMatcher} = await import('/js/mentions.js');
	  const find = mentionMatcher(['Alice', 'Alice Chen', 'guest-1a2b', 'Zoë', 'a.b', '', '  '], 'Bob');
	  const shown = (text) => find(text).map((m) => (m.me ? 'me:' : '') + text.slice(m.start, m.end));
	  check('plain', shown('hi @Alice!'), ['@Alice']);
	  check('any case', shown('@alice, @ALICE'), ['@alice', '@ALICE']);
	  check('longest name wins', shown('@Alice Chen said'), ['@Alice Chen']);
	  check('me', shown('thanks @bob.'), ['me:@bob']);
	  check('not in an address', shown('mail alice@example.com or bob@x.org'), []);
	  check('not a longer word', shown('@Alicex @Bobby'), []);
	  check('unicode', shown('@ZOË @zoë'), ['@ZOË', '@zoë']);
	  check('dots are dots', shown('@a.b and @aXb'), ['@a.b']);
	  check('punctuation around', shown('(@Alice) [@guest-1a2b]'), ['@Alice', '@guest-1a2b']);
	  check('no @', shown('Alice Bob'), []);
	  check('no names', mentionMatcher([], '')('@x @y'), []);
	  check('names with regex characters', mentionMatcher(['a+b (c)', '[x]'], '')('@a+b (c) @[x]').length, 2);
	`)
}

// The protocol helpers added for features a gateway may announce
// (static/js/wire.js) and the typing indicator (static/js/typing.js): the
// page never offers a guest credential or sends typing envelopes unless a
// welcome gave it one or announced the feature.
func TestAnnouncedFeatureHelpers(t *testing.T) {
	moduleChecks(t, "features", `
	  const w = await import('/js/wire.js');
	  const ty = await import('/js/typing.js');
	  check('no credentials', w.subprotocols('', ''), 'chatgate.v1');
	  check('token', w.subprotocols('t.k', ''), ['chatgate.v1', 'bearer.t.k']);
	  check('token wins over a guest credential', w.subprotocols('t.k', 'g.c'), ['chatgate.v1', 'bearer.t.k']);
	  check('guest credential', w.subprotocols('', 'g.c'), ['chatgate.v1', 'guest.g.c']);
	  check('credential read', w.guestCredential({guest: {credential: 'abc.def-1'}}), 'abc.def-1');
	  check('today: none', w.guestCredential({type: 'welcome', user: {id: 'u'}}), '');
	  check('unusable credential', w.guestCredential({guest: {credential: 'a b'}}), '');
	  check('features', w.features({features: ['typing', 7, null]}), ['typing']);
	  check('today: no features', w.features({type: 'welcome'}), []);
	  check('typing envelope', JSON.parse(w.typingEnvelope('lobby')), {type: 'typing', room: 'lobby'});
	  check('name keys', [w.nameKey(' Alice '), w.nameKey('ALICE'), w.nameKey('Zoe\u0308')], ['alice', 'alice', 'zoë']);

	  const s = new ty.TypingSender();
	  check('first keystroke', s.due('a', 0), true);
	  check('throttled', s.due('a', ty.TYPING_SEND_MS - 1), false);
	  check('other room', s.due('b', 1), true);
	  check('again later', s.due('a', ty.TYPING_SEND_MS), true);
	  s.reset('a');
	  check('after sending a message', s.due('a', ty.TYPING_SEND_MS + 1), true);

	  const v = new ty.TypingView();
	  v.seen('a', {id: 'u1', name: 'Alice'}, 0);
	  v.seen('a', {id: '', name: 'nobody'}, 0);
	  check('typing', v.names('a', 500), ['Alice']);
	  check('not elsewhere', v.names('b', 500), []);
	  v.seen('a', {id: 'u2', name: 'Bob'}, 1000);
	  check('both', v.names('a', 1000), ['Alice', 'Bob']);
	  check('next change', v.nextChange('a', 1000), ty.TYPING_SHOW_MS);
	  check('expired', v.names('a', ty.TYPING_SHOW_MS), ['Bob']);
	  v.stopped('a', 'u2');
	  check('stopped', v.names('a', ty.TYPING_SHOW_MS), []);
	  check('nothing to change', v.nextChange('a', ty.TYPING_SHOW_MS), null);
	  const text = (names) => ty.typingParts(names).map((p) => typeof p === 'string' ? p : '[' + p.name + ']').join('');
	  check('none', text([]), '');
	  check('one', text(['Alice']), '[Alice] is typing…');
	  check('two', text(['Alice', 'Bob']), '[Alice] and [Bob] are typing…');
	  check('three', text(['A', 'B', 'C']), '[A], [B] and [C] are typing…');
	  check('many', text(['A', 'B', 'C', 'D', 'E']), '[A], [B] and 3 others are typing…');
	`)
}
