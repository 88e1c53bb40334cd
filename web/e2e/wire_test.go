package e2e

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// The protocol helpers (static/js/wire.js), exercised in the browser that
// runs them: 64-bit seqs survive parsing, coalesced frames split, bad lines
// are skipped, join envelopes carry since as a plain integer, close reasons
// give retry hints only where the protocol defines them, and the backoff
// stays within its bounds.
func TestWireHelpers(t *testing.T) {
	g := startGateway(t, testConfig("gw-wire"), "gateway.log", nil)
	p := newPage(t, "wire")
	p.do("loading the page", chromedp.Navigate(g.url()), chromedp.WaitVisible(chromedp.ID("welcome-name")))

	failures := eval[[]string](p, `(async () => {
	  const w = await import('/js/wire.js');
	  const bad = [];
	  const check = (name, got, want) => {
	    const g = JSON.stringify(got, (k, v) => typeof v === 'bigint' ? v.toString() + 'n' : v);
	    const e = JSON.stringify(want, (k, v) => typeof v === 'bigint' ? v.toString() + 'n' : v);
	    if (g !== e) bad.push(name + ': got ' + g + ', want ' + e);
	  };

	  // Coalesced frame; the largest seq; a seq look-alike inside a text.
	  const frame = [
	    '{"type":"message","room":"r","seq":18446744073709551615,"from":{"id":"u_1","name":"a"},"text":",\\"seq\\":5 {\\"seq\\":6}","ts":1}',
	    '{"type":"ack","ref":"s1","room":"r","seq":9007199254740993}',
	    'not json',
	    '[1,2]',
	    '{"no":"type"}',
	    '{"type":"joined","room":"r","seq":0,"online":1,"recovered":false}',
	  ].join('\n');
	  const envs = w.parseFrame(frame);
	  check('count', envs.length, 3);
	  check('max seq', envs[0].seq, 18446744073709551615n);
	  check('text untouched', envs[0].text, ',"seq":5 {"seq":6}');
	  check('seq past 2^53', envs[1].seq, 9007199254740993n);
	  check('zero seq', envs[2].seq, 0n);
	  check('recovered', envs[2].recovered, false);
	  check('seq too big', w.parseFrame('{"type":"ack","seq":18446744073709551616}')[0].seq, null);
	  check('seq not a number', w.parseFrame('{"type":"ack","seq":"7"}')[0].seq, null);
	  check('binary ignored', w.parseFrame(new ArrayBuffer(2)), []);

	  check('join since', w.joinEnvelope('lobby', 18446744073709551615n, 'j1'),
	    '{"type":"join","room":"lobby","since":18446744073709551615,"ref":"j1"}');
	  check('join without since', JSON.parse(w.joinEnvelope('a.b-c_d', null, '')), {type: 'join', room: 'a.b-c_d'});
	  check('send', JSON.parse(w.sendEnvelope('r', 'hi "there"\n', 's2')), {type: 'send', room: 'r', text: 'hi "there"\n', ref: 's2'});

	  check('drain hint', w.closeInfo(1001, '{"r":"drain","retry_ms":3400}'), {code: 1001, r: 'drain', retryMs: 3400});
	  check('overload hint', w.closeInfo(1013, '{"r":"overloaded","retry_ms":10}').retryMs, 10);
	  check('no hint on 1008', w.closeInfo(1008, '{"r":"rate_abuse","retry_ms":10}').retryMs, null);
	  check('garbage reason', w.closeInfo(1006, '{oops').retryMs, null);
	  check('absurd hint capped', w.closeInfo(4008, '{"r":"slow_consumer","retry_ms":1e12}').retryMs, 300000);

	  check('hint honoured', w.reconnectDelay(9, 3400, () => 0), 3400);
	  check('hint plus jitter', w.reconnectDelay(0, 3400, () => 1), 3650);
	  check('backoff floor', w.reconnectDelay(0, null, () => 0), 100);
	  check('backoff first', w.reconnectDelay(0, null, () => 1), 500);
	  check('backoff grows', w.reconnectDelay(3, null, () => 1), 4000);
	  check('backoff cap', w.reconnectDelay(40, null, () => 1), 30000);
	  for (let i = 0; i < 200; i++) {
	    const d = w.reconnectDelay(i % 12, null);
	    if (!(d >= 100 && d <= 30000)) bad.push('backoff out of range: ' + d);
	  }

	  check('rooms', ['lobby', 'A.b_c-9', '', 'a b', 'x'.repeat(65), 'é'].map(w.validRoom), [true, true, false, false, false, false]);
	  check('names', ['', 'Zoë', 'x'.repeat(33), 'a\u0007b', '😀'.repeat(32)].map((n) => w.nameProblem(n) === ''), [true, true, false, false, true]);
	  check('bytes', w.byteLength('é😀'), 6);
	  check('url', w.socketURL({protocol: 'https:', host: 'chat.example:8443'}, 'Zoë & co'), 'wss://chat.example:8443/ws?name=Zo%C3%AB%20%26%20co');
	  check('url plain', w.socketURL({protocol: 'http:', host: '10.0.0.2:8080'}, ''), 'ws://10.0.0.2:8080/ws');
	  return bad;
	})()`)
	for _, f := range failures {
		t.Error(f)
	}
}
