// The page's outgoing messages: kept in the order the user wrote them,
// paced by the send limits welcome announces, sent again by themselves
// after a refusal, and matched with their ack or their echo
// (docs/protocol.md, "Rate limits" and "Writing a client").
//
// Order: each room has at most one message on the wire. The next one in
// that room goes out only when the gateway has confirmed (or refused) the
// one before it, so a refused message is sent again before anything
// written after it, and the room shows the user's messages in the order
// they were written. A message whose fate a dropped connection left
// unknown holds back the ones after it until the replay after the rejoin
// settles it.
//
// Pace: two token buckets mirror the gateway's, the connection's
// (send_per_sec/send_burst) and the one shared with the user's other
// connections (shared_send_per_sec/shared_send_burst). A message goes out
// when both have a token, so a page on its own is never refused; a refusal
// (other tabs spent the shared budget) sets both mirrors to what
// retry_after_ms says and the message is sent again at that time.
//
// No DOM here: the app renders what the callbacks report.

// The states of an item, as the app shows them.
export const QUEUED = 'queued'; // waiting its turn (or for the connection)
export const SENDING = 'sending'; // on the wire, not yet confirmed
export const UNKNOWN = 'unknown'; // the socket closed before its ack: is it in the replay?
export const RETRYING = 'retrying'; // refused for the rate limit; sent again at retryAt
export const FAILED = 'failed'; // given up; out of the queue (see onFailed)

const DEFAULT_RETRY_MS = 1000; // a rate_limited error without retry_after_ms
// A message that has to wait for a token waits this much longer. The
// gateway takes a token when a send arrives, the mirror when it leaves, so
// the gateway's bucket runs behind by the send's latency whenever a send
// found it full; a send timed to the mirror's exact refill then races it.
// The margin costs nothing sustained: the mirror is this much fuller when
// the send goes, so the next wait is as much shorter.
export const PACE_MARGIN_MS = 100;
const MAX_REJOINS = 3; // not_joined answers for one message before giving up

const realClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};

// TokenBucket mirrors one of the gateway's send buckets: rate tokens a
// second up to burst, one per send.
export class TokenBucket {
  constructor(rate, burst, now) {
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst;
    this.at = now;
  }

  level(now) {
    return Math.min(this.burst, this.tokens + (Math.max(0, now - this.at) / 1000) * this.rate);
  }

  // waitMs is how long until the bucket holds one token.
  waitMs(now) {
    const level = this.level(now);
    return level >= 1 ? 0 : Math.ceil(((1 - level) / this.rate) * 1000);
  }

  take(now) {
    this.tokens = this.level(now) - 1;
    this.at = now;
  }

  // oneAt records what a refusal says: the next token arrives at time at.
  // It only ever lowers the level.
  oneAt(now, at) {
    const level = 1 - ((at - now) / 1000) * this.rate;
    if (level < this.level(now)) {
      this.tokens = level;
      this.at = now;
    }
  }

  // resize takes new limits and keeps the level (capped by the new burst).
  resize(rate, burst, now) {
    const level = this.level(now);
    this.rate = rate;
    this.burst = burst;
    this.tokens = Math.min(level, burst);
    this.at = now;
  }
}

// sendLimits reads the send limits of a welcome's limits object; a limit
// that is missing or not a positive number is null (not paced by).
export function sendLimits(l) {
  const o = l !== null && typeof l === 'object' ? l : {};
  const rate = (v) => (Number.isFinite(v) && v > 0 ? v : null);
  const burst = (v) => (Number.isSafeInteger(v) && v > 0 ? v : null);
  return {
    rate: rate(o.send_per_sec),
    burst: burst(o.send_burst),
    sharedRate: rate(o.shared_send_per_sec),
    sharedBurst: burst(o.shared_send_burst),
  };
}

export class SendQueue {
  // io: the app's side.
  //   transmit(item) → bool: write the send envelope for item (item.ref is
  //     set); false when there is no open socket.
  //   ready(room) → bool: the room is joined on the current socket.
  //   onChange(item): item.state (or item.retryAt) changed.
  //   onSettled(item): the gateway sequenced it; the item is out of the queue.
  //   onFailed(item): given up; item.why says why, item.resend whether
  //     sending the text again (as a new message) makes sense.
  //   onHold(hold): the queue waits for time to pass ({until, byServer},
  //     byServer when a refusal's retry_after_ms is what it waits for), or
  //     no longer does (null).
  // clock: now/setTimeout/clearTimeout, for tests.
  constructor(io, clock = realClock) {
    this.io = io;
    this.clock = clock;
    this.items = []; // not yet confirmed, oldest first
    this.refs = 0;
    this.userId = ''; // of the current connection
    this.online = false;
    this.conn = null; // TokenBucket of the current connection, or null
    this.shared = null; // TokenBucket shared with the user's other connections, or null
    this.heldUntil = 0; // a refusal asked to wait until then
    this.timer = 0;
    this.hold = null;
  }

  // connected starts a new connection: its own bucket starts full, the
  // shared one keeps its level (the gateway's outlives a reconnect).
  connected(userId, limits) {
    const now = this.clock.now();
    this.online = true;
    this.userId = userId;
    this.conn = limits.rate && limits.burst ? new TokenBucket(limits.rate, limits.burst, now) : null;
    if (!limits.sharedRate || !limits.sharedBurst) this.shared = null;
    else if (this.shared) this.shared.resize(limits.sharedRate, limits.sharedBurst, now);
    else this.shared = new TokenBucket(limits.sharedRate, limits.sharedBurst, now);
    this.flush();
  }

  // disconnected: the socket is gone. A message on the wire may or may not
  // have reached the gateway: it becomes unknown until the replay after the
  // rejoin settles it, unless the gateway closed for a fault of ours
  // (clientFault) or by a clean drain, which writes every ack first
  // (drained: then it was not sequenced).
  disconnected({ clientFault = false, drained = false } = {}) {
    this.online = false;
    this.clock.clearTimeout(this.timer);
    this.timer = 0;
    for (const item of [...this.items]) {
      if (item.state === SENDING) {
        if (clientFault) {
          this.fail(item, 'The server closed the connection while this was being sent.', false);
          continue;
        }
        item.drained = drained;
        this.set(item, UNKNOWN);
      } else if (item.state === RETRYING) {
        this.set(item, QUEUED);
      }
    }
    this.setHold(null);
  }

  add(room, text) {
    const item = {
      room, text, state: QUEUED, ref: null, userId: '', drained: false, retryAt: 0, rejoins: 0,
      why: '', resend: false,
    };
    this.items.push(item);
    this.io.onChange(item);
    this.flush();
    return item;
  }

  // acked settles the item a send's ack names; false if none is waiting.
  acked(ref) {
    const item = this.items.find((q) => q.ref === ref && q.state === SENDING);
    if (item) this.settle(item);
    return Boolean(item);
  }

  // echoed settles the item a message of ours (live or replayed) is:
  // with one message per room on the wire, the oldest match is it.
  echoed(room, userId, text) {
    const item = this.items.find((q) => q.room === room && (q.state === SENDING || q.state === UNKNOWN) &&
      q.userId === userId && q.text === text);
    if (item) this.settle(item);
    return Boolean(item);
  }

  // refused handles an error envelope whose ref names an item on the wire.
  // It returns null if none does, else {action, room}, action saying what
  // the app has to do about room:
  //   'wait': nothing (the item goes again after retry_after_ms);
  //   'check': join it again with since, so that the replay tells whether
  //     the gateway stored the item (unavailable: it may have);
  //   'rejoin': join it again (the gateway says we are not in it);
  //   'failed': nothing more (onFailed has been called).
  refused(ref, code, retryAfterMs, why) {
    const item = typeof ref === 'string' && ref !== '' ? this.items.find((q) => q.ref === ref && q.state === SENDING) : null;
    if (!item) return null;
    switch (code) {
      case 'rate_limited': {
        const now = this.clock.now();
        const until = now + (Number.isFinite(retryAfterMs) && retryAfterMs > 0 ? retryAfterMs : DEFAULT_RETRY_MS);
        this.heldUntil = Math.max(this.heldUntil, until);
        // Which budget ran out is not said: assume both.
        this.conn?.oneAt(now, until);
        this.shared?.oneAt(now, until);
        item.retryAt = until;
        this.set(item, RETRYING);
        this.flush();
        return { action: 'wait', room: item.room };
      }
      case 'unavailable':
        item.drained = false;
        this.set(item, UNKNOWN);
        return { action: 'check', room: item.room };
      case 'not_joined':
        if (++item.rejoins > MAX_REJOINS) break;
        this.set(item, QUEUED);
        return { action: 'rejoin', room: item.room };
      default:
        break;
    }
    this.fail(item, why, false);
    this.flush();
    return { action: 'failed', room: item.room };
  }

  // replayed: the replay after a join of room is over. A message still
  // unknown was not in it: if the replay was complete (recovered) or a
  // drain closed the socket, it was never sequenced and goes again;
  // otherwise no one can tell.
  replayed(room, recovered) {
    for (const item of [...this.items]) {
      if (item.room !== room || item.state !== UNKNOWN) continue;
      if (recovered || item.drained) this.set(item, QUEUED);
      else this.fail(item, 'The connection dropped before the server confirmed this message. It may not have been delivered.', true);
    }
    this.flush();
  }

  // dropRoom forgets the items of a room the user left.
  dropRoom(room) {
    this.items = this.items.filter((q) => q.room !== room);
    this.flush();
  }

  // flush sends what may go now, oldest first, and sets a timer for what
  // has to wait for a token.
  flush() {
    this.clock.clearTimeout(this.timer);
    this.timer = 0;
    if (!this.online) {
      this.setHold(null);
      return;
    }
    const now = this.clock.now();
    const busy = new Set(); // rooms whose first item is not (yet) sendable
    let hold = null;
    for (const item of this.items) {
      if (busy.has(item.room)) continue;
      busy.add(item.room);
      if ((item.state !== QUEUED && item.state !== RETRYING) || !this.io.ready(item.room)) continue;
      const wait = this.waitMs(now);
      if (wait > 0) {
        // Every room draws on the same buckets: nothing else can go either.
        hold = { until: now + wait, byServer: this.heldUntil > now };
        this.timer = this.clock.setTimeout(() => this.flush(), wait);
        break;
      }
      item.ref = `s${++this.refs}`;
      item.userId = this.userId;
      if (!this.io.transmit(item)) break; // the socket is closing: its close event follows
      this.conn?.take(now);
      this.shared?.take(now);
      item.retryAt = 0;
      this.set(item, SENDING);
    }
    this.setHold(hold);
  }

  waitMs(now) {
    const wait = Math.max(0, this.heldUntil - now, this.conn ? this.conn.waitMs(now) : 0, this.shared ? this.shared.waitMs(now) : 0);
    return wait > 0 ? wait + PACE_MARGIN_MS : 0;
  }

  set(item, state) {
    item.state = state;
    this.io.onChange(item);
  }

  settle(item) {
    this.items = this.items.filter((q) => q !== item);
    this.io.onSettled(item);
    this.flush();
  }

  fail(item, why, resend) {
    this.items = this.items.filter((q) => q !== item);
    item.state = FAILED;
    item.why = why;
    item.resend = resend;
    this.io.onFailed(item);
  }

  setHold(hold) {
    const same = hold === this.hold ||
      (hold !== null && this.hold !== null && hold.until === this.hold.until && hold.byServer === this.hold.byServer);
    if (same) return;
    this.hold = hold;
    this.io.onHold(hold);
  }
}
