// chatgate — minimal browser client for wire protocol v1 (docs/protocol.md).
//
// One room per page. Everything a user or the server supplies is put into
// the DOM with textContent / createTextNode only; no HTML is ever parsed.

const SUBPROTOCOL = 'chatgate.v1';
const NAME_KEY = 'chatgate.name';
const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const DEFAULT_ROOM = 'lobby';

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30_000;
const SERVER_RETRY_CAP_MS = 5 * 60_000; // never trust a retry_ms beyond this
const JOIN_TIMEOUT_MS = 15_000; // socket open → joined, else start over
const REPLAY_TIMEOUT_MS = 5_000; // a replay that never reaches joined.seq
const MAX_LOG_ITEMS = 500;
const MAX_NAMES_IN_NOTICE = 3;
// Close codes whose JSON reason may carry retry_ms (drain, overloaded, slow consumer).
const CODES_WITH_RETRY = new Set([1001, 1013, 4008]);

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'),
  statusText: $('status-text'),
  statusCount: $('status-count'),
  retryNow: $('retry-now'),
  joinForm: $('join-form'),
  name: $('name'),
  room: $('room'),
  joinError: $('join-error'),
  chat: $('chat'),
  roomTitle: $('room-title'),
  me: $('me'),
  leave: $('leave'),
  scroller: $('scroller'),
  log: $('log'),
  outbox: $('outbox'),
  membersBox: $('members-box'),
  members: $('members'),
  membersNote: $('members-note'),
  onlineCount: $('online-count'),
  sendForm: $('send-form'),
  text: $('text'),
  send: $('send'),
};

// Session: from pressing Join until pressing Leave; survives reconnects.
const session = {
  active: false,
  name: '',
  room: '',
  sockets: 0, // sockets opened so far; 0 means the next one is the first
  joins: 0, // successful joins so far
  attempt: 0, // consecutive failures, the backoff exponent
  lastSeq: null, // highest seq shown for the room
  baseSeq: null, // joined.seq of the latest join
  myIds: new Set(), // user ids this page has had (one per anonymous connection)
  members: null, // Map id → name, or null when the room only reports a count
  online: 0,
  pending: new Map(), // ref → outgoing message awaiting its ack / echo
  refs: 0,
  limits: null,
  retryTimer: 0,
  countdownTimer: 0,
  retryAt: 0,
  retryIsServerHint: false,
};

// Connection: one WebSocket and what it has learned.
let conn = null;

// ---------------------------------------------------------------- helpers

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function str(v, fallback = '') {
  return typeof v === 'string' ? v : fallback;
}

function int(v) {
  return Number.isSafeInteger(v) ? v : null;
}

function validUser(u) {
  return u !== null && typeof u === 'object' && typeof u.id === 'string' && u.id !== '';
}

function displayName(u) {
  return str(u && u.name).trim() || 'someone';
}

function loadName() {
  try {
    return localStorage.getItem(NAME_KEY) || '';
  } catch {
    return ''; // storage disabled
  }
}

function saveName(name) {
  try {
    if (name) localStorage.setItem(NAME_KEY, name);
    else localStorage.removeItem(NAME_KEY);
  } catch {
    // storage disabled or full: the name just is not remembered
  }
}

// Mirrors the gateway's rule: trimmed, 1–32 runes, no control characters.
// An empty name is fine: the gateway then picks a guest name.
function nameProblem(name) {
  if (name === '') return '';
  if ([...name].length > 32) return 'Display names can be at most 32 characters.';
  if (/\p{Cc}/u.test(name)) return 'Display names cannot contain control characters.';
  return '';
}

const utf8 = new TextEncoder();
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

function timeElement(ms) {
  const node = el('time', 'ts');
  if (!Number.isFinite(ms)) return node;
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return node;
  const today = new Date().toDateString() === d.toDateString();
  node.dateTime = d.toISOString();
  node.textContent = (today ? timeFmt : dateTimeFmt).format(d);
  node.title = fullFmt.format(d);
  return node;
}

// ----------------------------------------------------------------- status

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.statusText.textContent = text;
  ui.statusCount.textContent = '';
  ui.retryNow.hidden = state !== 'reconnecting';
  // The member list is only live while connected.
  ui.chat.classList.toggle('stale', state !== 'connected');
}

function updateCountdown() {
  const secs = Math.max(1, Math.ceil((session.retryAt - Date.now()) / 1000));
  // Kept out of the live region's announced text: it changes every second.
  ui.statusCount.textContent = ` in ${secs}s`;
}

function setSendEnabled(on) {
  ui.send.disabled = !on;
}

// -------------------------------------------------------------- rendering

function nearBottom() {
  const s = ui.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 48;
}

function scrollToBottom() {
  ui.scroller.scrollTop = ui.scroller.scrollHeight;
}

function appendToLog(item) {
  const stick = nearBottom();
  ui.log.append(item);
  while (ui.log.childElementCount > MAX_LOG_ITEMS) ui.log.firstElementChild.remove();
  if (stick) scrollToBottom();
}

function notice(text, kind = 'info') {
  const li = el('li', `notice notice-${kind}`);
  li.append(el('span', 'notice-text', text));
  li.append(timeElement(Date.now()));
  appendToLog(li);
}

function messageItem(from, text, ts, own) {
  const li = el('li', own ? 'msg own' : 'msg');
  const meta = el('div', 'meta');
  meta.append(el('span', 'author', displayName(from)));
  meta.append(timeElement(ts));
  li.append(meta, el('p', 'text', text));
  return li;
}

function renderMessage(m) {
  const own = validUser(m.from) && session.myIds.has(m.from.id);
  appendToLog(messageItem(m.from, str(m.text), m.ts, own));
}

function renderMembers() {
  ui.onlineCount.textContent = String(session.online);
  const frag = document.createDocumentFragment();
  if (session.members) {
    const people = [...session.members].sort((a, b) => a[1].localeCompare(b[1]));
    for (const [id, name] of people) {
      const li = el('li', null, name);
      if (session.myIds.has(id)) {
        li.className = 'me';
        li.append(el('span', 'you', ' (you)'));
      }
      frag.append(li);
    }
  }
  ui.members.replaceChildren(frag);
  ui.membersNote.hidden = session.members !== null;
}

function namesSentence(users, verb) {
  const names = users.map(displayName);
  if (names.length <= MAX_NAMES_IN_NOTICE) {
    const list = names.length === 1 ? names[0]
      : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
    return `${list} ${verb}`;
  }
  const more = names.length - MAX_NAMES_IN_NOTICE;
  return `${names.slice(0, MAX_NAMES_IN_NOTICE).join(', ')} and ${more} others ${verb}`;
}

// ---------------------------------------------------------- outgoing queue

function pendingItem(p) {
  const li = messageItem({ name: p.name }, p.text, p.sentAt, true);
  li.classList.add('pending');
  const state = el('span', 'state', 'sending…');
  li.querySelector('.meta').append(state);
  p.li = li;
  p.stateEl = state;
  return li;
}

function setPendingState(p, state, label) {
  p.state = state;
  p.li.dataset.state = state;
  p.stateEl.textContent = label;
}

function dropPending(p) {
  session.pending.delete(p.ref);
  p.li.remove();
}

function markFailed(p, reason) {
  setPendingState(p, 'failed', 'not sent');
  p.li.classList.add('failed');
  p.li.querySelector('.why')?.remove();
  p.li.querySelector('.actions')?.remove();
  const why = el('p', 'why', reason);
  const actions = el('div', 'actions');
  const retry = el('button', 'small', 'Retry');
  retry.type = 'button';
  retry.setAttribute('aria-label', `Retry sending: ${p.text.slice(0, 60)}`);
  retry.addEventListener('click', () => {
    if (!canSend()) {
      notice('Not connected yet — try again once the status says connected.', 'error');
      return;
    }
    dropPending(p);
    sendText(p.text);
  });
  const dismiss = el('button', 'small secondary', 'Dismiss');
  dismiss.type = 'button';
  dismiss.addEventListener('click', () => dropPending(p));
  actions.append(retry, dismiss);
  p.li.append(why, actions);
}

// A message we sent has shown up in the room: take it out of the outbox.
// Match by the seq the ack gave us, else (echo before ack, or an echo
// replayed after a reconnect) by author id and text, oldest first — one
// connection's sends are sequenced in the order they were written.
function settleOwn(m) {
  for (const p of session.pending.values()) {
    if (p.seq !== null && p.seq === m.seq) {
      dropPending(p);
      return;
    }
  }
  if (!validUser(m.from)) return;
  for (const p of session.pending.values()) {
    if (p.seq === null && p.state !== 'failed' && p.userId === m.from.id && p.text === m.text) {
      dropPending(p);
      return;
    }
  }
}

function canSend() {
  return conn !== null && conn.joined && conn.ws.readyState === WebSocket.OPEN;
}

function sendText(text) {
  const p = {
    ref: `r${++session.refs}`,
    room: session.room,
    text,
    name: conn.me ? conn.me.name : session.name,
    userId: conn.me ? conn.me.id : '',
    sentAt: Date.now(),
    seq: null,
    state: 'sending',
    li: null,
    stateEl: null,
  };
  session.pending.set(p.ref, p);
  const stick = nearBottom();
  ui.outbox.append(pendingItem(p));
  if (stick) scrollToBottom();
  if (!wsSend({ type: 'send', room: p.room, text: p.text, ref: p.ref })) {
    markFailed(p, 'Not connected.');
  }
}

function onSendSubmit(ev) {
  ev.preventDefault();
  const text = ui.text.value.trim();
  if (text === '') return;
  if (!canSend()) {
    notice('Not connected — your message is still in the box.', 'error');
    return;
  }
  const max = session.limits && int(session.limits.max_text_bytes);
  const size = utf8.encode(text).length;
  if (max && size > max) {
    notice(`That message is too long (${size} bytes; the limit is ${max}).`, 'error');
    return;
  }
  sendText(text);
  ui.text.value = '';
  autosize();
  ui.text.focus();
}

// ------------------------------------------------------------- connection

function wsSend(obj) {
  if (conn === null || conn.ws.readyState !== WebSocket.OPEN) return false;
  conn.ws.send(JSON.stringify(obj));
  return true;
}

function socketURL(first) {
  const q = new URLSearchParams();
  if (session.name) q.set('name', session.name);
  // Only the first socket auto-joins via the query; later ones send an
  // explicit join carrying `since`, so nothing is replayed twice or missed.
  if (first) q.set('room', session.room);
  const query = q.toString();
  return (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/ws' +
    (query ? `?${query}` : '');
}

function clearRetryTimers() {
  clearTimeout(session.retryTimer);
  clearInterval(session.countdownTimer);
  session.retryTimer = 0;
  session.countdownTimer = 0;
}

function connect() {
  clearRetryTimers();
  const first = session.sockets === 0;
  session.sockets++;
  setStatus('connecting', 'Connecting…');
  let ws;
  try {
    ws = new WebSocket(socketURL(first), SUBPROTOCOL);
  } catch (err) {
    console.error('chatgate: cannot open WebSocket', err);
    conn = null;
    scheduleReconnect(null);
    return;
  }
  const c = {
    ws,
    first,
    me: null,
    joined: false,
    sinceSent: null,
    replayUntil: null,
    joinTimer: 0,
    replayTimer: 0,
  };
  conn = c;
  armJoinTimer(c);
  ws.addEventListener('message', (ev) => {
    if (conn !== c || typeof ev.data !== 'string') return;
    for (const line of ev.data.split('\n')) {
      if (conn !== c) return; // a frame handler ended this connection
      if (line.trim() === '') continue;
      let obj;
      try {
        obj = JSON.parse(line);
      } catch {
        console.warn('chatgate: ignoring a malformed server line');
        continue;
      }
      if (obj !== null && typeof obj === 'object') handleServer(c, obj);
    }
  });
  ws.addEventListener('close', (ev) => {
    if (conn === c) onClosed(c, ev);
  });
}

// If the socket does not get to `joined` in time, drop it and start over.
function armJoinTimer(c, ms = JOIN_TIMEOUT_MS) {
  clearTimeout(c.joinTimer);
  c.joinTimer = setTimeout(() => {
    if (conn === c && !c.joined) c.ws.close(4000, 'join timeout');
  }, ms);
}

function sendJoin(c) {
  const msg = { type: 'join', room: session.room };
  const since = session.lastSeq ?? session.baseSeq;
  if (since !== null) msg.since = since;
  c.sinceSent = since;
  wsSend(msg);
}

function retryHint(ev) {
  if (!CODES_WITH_RETRY.has(ev.code) || !ev.reason) return null;
  try {
    const r = JSON.parse(ev.reason);
    const ms = r && r.retry_ms;
    if (typeof ms === 'number' && Number.isFinite(ms) && ms >= 0) {
      return Math.min(ms, SERVER_RETRY_CAP_MS);
    }
  } catch {
    // not JSON: fall back to our own backoff
  }
  return null;
}

function closeExplanation(code) {
  switch (code) {
    case 1000: return 'The connection was closed.';
    case 1001: return 'The server is restarting.';
    case 1003:
    case 1007:
    case 1009: return 'The server rejected something this page sent.';
    case 1008: return 'The server closed the connection (too many requests or errors).';
    case 1011: return 'The server hit an internal error.';
    case 1013: return 'The server is overloaded.';
    case 4001: return 'The connection went quiet for too long.';
    case 4008: return 'The connection could not keep up with the room.';
    default: return 'The connection was lost.';
  }
}

function onClosed(c, ev) {
  clearTimeout(c.joinTimer);
  clearTimeout(c.replayTimer);
  conn = null;
  setSendEnabled(false);
  // Anything not yet acked may or may not have reached the server; the
  // replay after rejoining tells which (see settleOwn / finishReplay).
  for (const p of session.pending.values()) {
    if (p.state === 'sending') setPendingState(p, 'unconfirmed', 'waiting for connection…');
  }
  if (!session.active) return;
  if (c.joined) notice(`${closeExplanation(ev.code)} Reconnecting…`, 'warn');
  const hint = retryHint(ev);
  scheduleReconnect(hint);
}

// Full jitter: a uniform wait in [0, min(cap, base·2^attempt)), unless the
// server said how long to wait (drain, overload, slow consumer).
function scheduleReconnect(serverDelay) {
  let delay = serverDelay;
  if (delay === null) {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(session.attempt, 16));
    delay = Math.random() * ceiling;
    session.attempt++;
  }
  session.retryIsServerHint = serverDelay !== null;
  session.retryAt = Date.now() + delay;
  clearRetryTimers();
  session.retryTimer = setTimeout(connect, delay);
  if (navigator.onLine === false) {
    setStatus('offline', 'Offline — waiting for the network');
    return;
  }
  setStatus('reconnecting', 'Reconnecting');
  updateCountdown();
  session.countdownTimer = setInterval(updateCountdown, 1000);
}

function reconnectNow() {
  if (session.active && conn === null) connect();
}

// ---------------------------------------------------------- server frames

function handleServer(c, m) {
  switch (m.type) {
    case 'welcome': onWelcome(c, m); break;
    case 'joined': onJoined(c, m); break;
    case 'message': onMessage(c, m); break;
    case 'ack': onAck(m); break;
    case 'presence': onPresence(c, m); break;
    case 'left': onLeft(c, m); break;
    case 'error': onError(c, m); break;
    default: break; // newer server: ignore what we do not know
  }
}

function onWelcome(c, m) {
  if (!validUser(m.user)) return;
  c.me = { id: m.user.id, name: displayName(m.user) };
  session.myIds.add(c.me.id);
  if (m.limits && typeof m.limits === 'object') session.limits = m.limits;
  ui.me.textContent = `You are ${c.me.name}`;
  if (!c.first) sendJoin(c);
}

function onJoined(c, m) {
  if (m.room !== session.room) return;
  const seq = int(m.seq);
  c.joined = true;
  clearTimeout(c.joinTimer);
  session.attempt = 0;

  if (seq !== null && session.lastSeq !== null && seq < session.lastSeq) {
    // The room's sequence went backwards: it was recreated (server restart
    // or the empty room expired). Start counting again from here.
    session.lastSeq = seq;
    notice('This room was restarted on the server; earlier messages are gone.', 'marker');
  } else if (c.sinceSent !== null && m.recovered === false) {
    notice('Some messages sent while you were away could not be recovered.', 'marker');
  }
  if (seq !== null) session.baseSeq = seq;

  if (Array.isArray(m.members)) {
    session.members = new Map();
    for (const u of m.members) if (validUser(u)) session.members.set(u.id, displayName(u));
  } else {
    session.members = null; // large room: count only
  }
  session.online = int(m.online) ?? (session.members ? session.members.size : 0);
  renderMembers();

  // After a rejoin the replay runs up to joined.seq; only then do we know
  // which of our unconfirmed messages never made it.
  const have = session.lastSeq ?? c.sinceSent;
  if (c.sinceSent === null || seq === null || have === null || seq <= have) finishReplay(c);
  else {
    c.replayUntil = seq;
    // Normally the replay follows at once; with history turned off it never
    // comes, so do not leave messages "waiting" forever.
    c.replayTimer = setTimeout(() => {
      if (conn === c && c.replayUntil !== null) finishReplay(c);
    }, REPLAY_TIMEOUT_MS);
  }

  setStatus('connected', 'Connected');
  setSendEnabled(true);
  notice(session.joins === 0 ? `You joined #${session.room}.` : 'Reconnected.', 'info');
  session.joins++;
}

function finishReplay(c) {
  c.replayUntil = null;
  clearTimeout(c.replayTimer);
  for (const p of [...session.pending.values()]) {
    if (c.me && p.userId === c.me.id) continue; // sent on this connection
    if (p.seq !== null) {
      // Acked before the drop but not in the replay (history ran out):
      // it was delivered, so show it from what we sent.
      dropPending(p);
      appendToLog(messageItem({ name: p.name }, p.text, p.sentAt, true));
    } else if (p.state === 'unconfirmed') {
      markFailed(p, 'The connection dropped before the server confirmed this message.');
    }
  }
}

function onMessage(c, m) {
  if (m.room !== session.room) return;
  const seq = int(m.seq);
  if (seq === null) return;
  // Drop anything already shown: replays can overlap what we saw live.
  if (session.lastSeq !== null && seq <= session.lastSeq) return;
  session.lastSeq = seq;
  renderMessage(m);
  settleOwn({ seq, from: m.from, text: str(m.text) });
  if (c.replayUntil !== null && seq >= c.replayUntil) finishReplay(c);
}

function onAck(m) {
  const p = session.pending.get(m.ref);
  if (!p) return; // already settled by the echo
  const seq = int(m.seq);
  if (seq !== null && session.lastSeq !== null && seq <= session.lastSeq) {
    dropPending(p); // its echo is already on screen (or was skipped)
    return;
  }
  p.seq = seq;
  setPendingState(p, 'sent', 'sent');
}

function onPresence(c, m) {
  if (m.room !== session.room || !c.joined) return;
  const hasLists = Array.isArray(m.joined) || Array.isArray(m.left);
  const joinedUsers = (Array.isArray(m.joined) ? m.joined : []).filter(validUser);
  const leftUsers = (Array.isArray(m.left) ? m.left : []).filter(validUser);
  // Someone in both lists came and went (or went and came) within one
  // presence interval: their state is unchanged.
  const inLeft = new Set(leftUsers.map((u) => u.id));
  const inJoined = new Set(joinedUsers.map((u) => u.id));
  const arrived = [];
  const departed = [];

  if (!hasLists) {
    session.members = null; // the room grew past the list threshold
  } else {
    for (const u of joinedUsers) {
      if (inLeft.has(u.id)) continue;
      if (session.members) {
        if (session.members.has(u.id)) continue; // idempotent
        session.members.set(u.id, displayName(u));
      }
      arrived.push(u);
    }
    for (const u of leftUsers) {
      if (inJoined.has(u.id)) continue;
      if (session.members && !session.members.delete(u.id)) continue;
      departed.push(u);
    }
  }
  session.online = int(m.online) ?? (session.members ? session.members.size : session.online);
  renderMembers();

  const others = (u) => !session.myIds.has(u.id);
  const a = arrived.filter(others);
  const d = departed.filter(others);
  if (a.length) notice(namesSentence(a, 'joined'), 'presence');
  if (d.length) notice(namesSentence(d, 'left'), 'presence');
}

function onLeft(c, m) {
  if (m.room !== session.room) return;
  // We never ask to leave without closing, so the server removed us.
  notice(`You are no longer in #${session.room}.`, 'warn');
  endSession();
}

function friendlyError(m) {
  const wait = int(m.retry_after_ms);
  const secs = wait !== null ? Math.max(1, Math.ceil(wait / 1000)) : null;
  switch (m.code) {
    case 'rate_limited':
      return secs !== null
        ? `You're sending messages too quickly. Try again in ${secs}s.`
        : "You're sending messages too quickly. Slow down a little.";
    case 'too_large': return 'That message is too long.';
    case 'not_joined': return "You're not in this room (yet).";
    case 'invalid_room': return 'That room name is not allowed.';
    case 'room_limit': return "You've joined too many rooms.";
    case 'unavailable': return 'The server is busy. Please try again shortly.';
    case 'internal': return 'Something went wrong on the server.';
    case 'bad_request':
    case 'unknown_type': return 'The server did not understand a request from this page.';
    default: return str(m.message) || 'Something went wrong.';
  }
}

function onError(c, m) {
  const text = friendlyError(m);
  const p = typeof m.ref === 'string' ? session.pending.get(m.ref) : undefined;
  if (p) {
    markFailed(p, text);
    return;
  }
  if (!c.joined) {
    if (m.code === 'invalid_room' || m.code === 'room_limit') {
      notice(text, 'error');
      endSession();
      return;
    }
    if (m.code === 'rate_limited' || m.code === 'unavailable') {
      // The join itself was refused for now: ask again when allowed.
      const wait = Math.min(int(m.retry_after_ms) ?? 1000, SERVER_RETRY_CAP_MS);
      setTimeout(() => {
        if (conn === c && !c.joined) sendJoin(c);
      }, wait);
      armJoinTimer(c, wait + JOIN_TIMEOUT_MS);
      return;
    }
  }
  notice(text, 'error');
}

// --------------------------------------------------------------- session

function startSession(name, room) {
  clearRetryTimers();
  Object.assign(session, {
    active: true,
    name,
    room,
    sockets: 0,
    joins: 0,
    attempt: 0,
    lastSeq: null,
    baseSeq: null,
    members: null,
    online: 0,
    limits: null,
  });
  session.myIds.clear();
  session.pending.clear();
  ui.log.replaceChildren();
  ui.outbox.replaceChildren();
  ui.me.textContent = '';
  ui.roomTitle.textContent = `#${room}`;
  document.title = `#${room} · chatgate`;
  renderMembers();
  ui.joinForm.hidden = true;
  ui.chat.hidden = false;
  ui.text.focus();
  connect();
}

// Stop for good: close the socket, stop retrying, go back to the form.
function endSession() {
  session.active = false;
  clearRetryTimers();
  if (conn) {
    const c = conn;
    conn = null; // its close event is now ignored
    clearTimeout(c.joinTimer);
    clearTimeout(c.replayTimer);
    c.ws.close(1000, 'bye');
  }
  setSendEnabled(false);
  setStatus('offline', 'Offline');
  ui.chat.hidden = true;
  ui.joinForm.hidden = false;
  document.title = 'chatgate';
  ui.room.focus();
}

function onJoinSubmit(ev) {
  ev.preventDefault();
  const name = ui.name.value.trim();
  const room = ui.room.value.trim() || DEFAULT_ROOM;
  const problem = nameProblem(name) ||
    (ROOM_RE.test(room) ? '' : 'Room names use letters, digits, “.”, “_” and “-” (up to 64).');
  ui.joinError.textContent = problem;
  ui.name.setAttribute('aria-invalid', String(nameProblem(name) !== ''));
  ui.room.setAttribute('aria-invalid', String(!ROOM_RE.test(room)));
  if (problem) return;
  saveName(name);
  ui.room.value = room;
  try {
    history.replaceState(null, '', `#${room}`);
  } catch {
    // sandboxed: not important
  }
  startSession(name, room);
}

// Grow the message box with its content where CSS field-sizing is missing.
const needsAutosize = !(window.CSS && CSS.supports('field-sizing', 'content'));
function autosize() {
  if (!needsAutosize) return;
  ui.text.style.height = 'auto';
  ui.text.style.height = `${Math.min(ui.text.scrollHeight, 160)}px`;
}

function init() {
  ui.name.value = loadName();
  let fromHash = '';
  try {
    fromHash = decodeURIComponent(location.hash.slice(1));
  } catch {
    // malformed escape in the URL: ignore it
  }
  if (ROOM_RE.test(fromHash)) ui.room.value = fromHash;
  ui.membersBox.open = window.matchMedia('(min-width: 720px)').matches;

  ui.joinForm.addEventListener('submit', onJoinSubmit);
  ui.sendForm.addEventListener('submit', onSendSubmit);
  ui.leave.addEventListener('click', endSession);
  ui.retryNow.addEventListener('click', reconnectNow);
  ui.text.addEventListener('input', autosize);
  ui.text.addEventListener('keydown', (ev) => {
    // Enter sends; Shift+Enter is a new line; never interrupt an IME.
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
      ev.preventDefault();
      ui.sendForm.requestSubmit();
    }
  });
  window.addEventListener('online', () => {
    // Back on the network: skip our own backoff (never a server's hint).
    if (session.active && conn === null && !session.retryIsServerHint) reconnectNow();
  });
  window.addEventListener('offline', () => {
    if (session.active && conn === null) setStatus('offline', 'Offline — waiting for the network');
  });
  setStatus('offline', 'Offline');
  ui.name.focus();
}

init();
