// chatgate — the browser client for wire protocol v1 (docs/protocol.md).
//
// Several rooms over one WebSocket, optimistic sending, reconnects that
// lose nothing and show nothing twice. Everything a user or the server
// supplies reaches the DOM as text (textContent / text nodes) only.

import { $, el, timeEl, dayKey, dayLabel, avatar, richText } from './js/dom.js';
import { Connection } from './js/connection.js';
import {
  CLIENT_FAULT_CODES, byteLength, cleanToken, fragmentToken, joinEnvelope, leaveEnvelope, nameProblem,
  sendEnvelope, socketURL, subprotocols, tokenProblem, validRoom,
} from './js/wire.js';

const GROUP_GAP_MS = 5 * 60_000; // a pause this long starts a new group
const MAX_ITEMS = 1000; // per room; older items are dropped from the DOM
const REPLAY_FALLBACK_MS = 2500; // a replay that never reaches joined.seq
const RESYNC_MIN_MS = 10_000; // at most one member-list resync per room
const TOAST_MS = 8000;
const SLOW_MODE_MS = 10_000;
const FRAME_LIMIT = 32 << 10; // the gateway's default --max-frame-bytes
const DEFAULT_ROOM = 'lobby';
const KEYS = { name: 'chatgate.name', rooms: 'chatgate.rooms', active: 'chatgate.active', token: 'chatgate.token' };
// A token that worked before may meet a gateway that is restarting: allow a
// few failed handshakes (with backoff) before calling it refused.
const AUTH_MISSES_KNOWN_TOKEN = 3;
const MSG_SIGNIN_FAILED = 'Sign-in failed: the token was refused or has expired — paste a fresh token';
const MSG_EXPIRED = 'Your session expired — paste a fresh token to reconnect';

const ui = {
  welcome: $('welcome'), welcomeForm: $('welcome-form'), welcomeName: $('welcome-name'),
  welcomeRoom: $('welcome-room'), welcomeToken: $('welcome-token'), welcomeError: $('welcome-error'),
  authNotice: $('auth-notice'), authNoticeText: $('auth-notice-text'), authFix: $('auth-fix'),
  shell: $('shell'), sidebar: $('sidebar'), scrim: $('scrim'), members: $('members'),
  openRooms: $('open-rooms'), openRoomsBadge: $('open-rooms-badge'), closeRooms: $('close-rooms'),
  roomList: $('room-list'), joinForm: $('join-form'), joinRoom: $('join-room'), joinError: $('join-error'),
  meAvatar: $('me-avatar'), meName: $('me-name'), changeName: $('change-name'),
  roomTitle: $('room-title'), roomSub: $('room-sub'),
  status: $('status'), statusText: $('status-text'), statusCount: $('status-count'), retryNow: $('retry-now'),
  toggleMembers: $('toggle-members'), memberCountBadge: $('member-count-badge'), leaveRoom: $('leave-room'),
  toast: $('toast'), toastText: $('toast-text'), toastClose: $('toast-close'),
  scroller: $('scroller'), panes: $('panes'), empty: $('empty'), emptyJoin: $('empty-join'), jump: $('jump'),
  ratelimit: $('ratelimit'), ratelimitText: $('ratelimit-text'),
  composer: $('composer'), text: $('composer-text'), send: $('send'), count: $('composer-count'),
  onlineCount: $('online-count'), memberList: $('member-list'), membersNote: $('members-note'),
  closeMembers: $('close-members'),
  nameDialog: $('name-dialog'), nameForm: $('name-form'), nameInput: $('name-input'), tokenInput: $('token-input'),
  nameError: $('name-error'), nameCancel: $('name-cancel'),
};

const state = {
  name: '', // the name asked for (may be '' for a guest name)
  // The access token, if any. It lives here, in sessionStorage (for
  // reloads in this tab) and in the handshake's subprotocols; never in
  // localStorage, the URL, the DOM or a log.
  token: '',
  tokenAccepted: false, // a welcome arrived with this token
  authMisses: 0, // handshakes failed in a row with this token
  authBlocked: false, // waiting for a fresh token
  me: null, // {id, name} of the current connection
  myIds: new Set(), // every user id this page has had (one per connection)
  limits: null,
  rooms: new Map(), // name → room, in sidebar order
  active: null, // name of the room on screen
  pending: [], // outgoing messages not yet confirmed, oldest first
  refs: 0,
  joinRefs: new Map(), // join ref → room name
  cooldownUntil: 0, // after rate_limited: no send before this
  cooldownTimer: 0,
  slowUntil: 0, // after a rate_limited error, pace every send for a while
  flushTimer: 0,
  bucket: { tokens: 0, at: 0 }, // mirror of the server's send bucket, for backlogs
  statusTimer: 0,
  toastTimer: 0,
};

// ---------------------------------------------------------------- storage

const store = {
  get(key) {
    try {
      return localStorage.getItem(key);
    } catch {
      return null; // storage disabled
    }
  },
  set(key, value) {
    try {
      if (value === null) localStorage.removeItem(key);
      else localStorage.setItem(key, value);
    } catch {
      // disabled or full: not remembered, not fatal
    }
  },
};

// The token is kept for this tab only (reloads, reconnects), never in the
// localStorage that outlives it.
const session = {
  get(key) {
    try {
      return sessionStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      if (value === null) sessionStorage.removeItem(key);
      else sessionStorage.setItem(key, value);
    } catch {
      // disabled: the token lasts until the page is closed
    }
  },
};

function saveRooms() {
  store.set(KEYS.rooms, JSON.stringify([...state.rooms.keys()]));
  store.set(KEYS.active, state.active);
}

function savedRooms() {
  try {
    const list = JSON.parse(store.get(KEYS.rooms) || '[]');
    return Array.isArray(list) ? list.filter(validRoom) : [];
  } catch {
    return [];
  }
}

// ------------------------------------------------------------ connection

const conn = new Connection({
  // With a token the gateway takes the name from it: no name parameter.
  url: () => socketURL(location, state.token ? '' : state.name),
  protocols: () => subprotocols(state.token),
  onWelcome,
  onEnvelope,
  onClose,
  onStatus: renderStatus,
});

function user(u) {
  if (u === null || typeof u !== 'object' || typeof u.id !== 'string') return { id: '', name: 'someone' };
  const name = typeof u.name === 'string' && u.name.trim() !== '' ? u.name : 'someone';
  return { id: u.id, name };
}

function onWelcome(w) {
  if (state.token) {
    state.tokenAccepted = true;
    state.authMisses = 0;
  }
  state.me = user(w.user);
  state.myIds.add(state.me.id);
  const l = w.limits && typeof w.limits === 'object' ? w.limits : {};
  state.limits = {
    maxText: Number.isSafeInteger(l.max_text_bytes) && l.max_text_bytes > 0 ? l.max_text_bytes : null,
    maxRooms: Number.isSafeInteger(l.max_rooms) && l.max_rooms > 0 ? l.max_rooms : null,
    rate: Number.isFinite(l.send_per_sec) && l.send_per_sec > 0 ? l.send_per_sec : null,
    burst: Number.isSafeInteger(l.send_burst) && l.send_burst > 0 ? l.send_burst : null,
  };
  state.bucket = { tokens: state.limits.burst ?? 1, at: Date.now() };
  renderMe();
  renderComposer();
  for (const room of state.rooms.values()) sendJoin(room);
}

function onEnvelope(env) {
  switch (env.type) {
    case 'joined': return onJoined(env);
    case 'message': return onMessage(env);
    case 'ack': return onAck(env);
    case 'presence': return onPresence(env);
    case 'error': return onError(env);
    default: return undefined; // 'left' and unknown types: nothing to do
  }
}

// The socket is gone. Decide what each unconfirmed message became.
function onClose(info) {
  for (const room of state.rooms.values()) {
    room.inRoom = false;
    room.joining = false;
    endReplayTimer(room);
    room.replayUntil = null;
  }
  state.joinRefs.clear();
  for (const p of state.pending) {
    if (p.state !== 'sending') continue;
    if (CLIENT_FAULT_CODES.has(info.code)) {
      failPending(p, 'The server closed the connection while this was being sent.');
      continue;
    }
    // Sent but not acknowledged: after rejoining with since, look for it in
    // the replay (it carries this socket's user id) before sending it again.
    // A drain (a clean 1001) writes every ack before its close frame, so
    // then it was not sent even if the replay cannot tell.
    p.drained = info.code === 1001 && info.wasClean === true;
    setPending(p, 'unknown');
  }
  if (info.code === 1008) showToast('The server disconnected this page for sending too much. Reconnecting shortly.');
  if (state.token) checkAuth(info);
  renderAll();
}

// A refused handshake (401) is invisible to scripts: the socket just
// closes (1006) before welcome. With a token, that means the token was
// refused; 4401 means it expired while connected. Either way retrying with
// the same token is pointless: stop until the user gives a fresh one.
function checkAuth(info) {
  if (info.code === 4401) {
    blockAuth(MSG_EXPIRED);
    return;
  }
  if (info.wasReady || info.byClient || info.timedOut) return;
  state.authMisses++;
  if (!state.tokenAccepted || state.authMisses >= AUTH_MISSES_KNOWN_TOKEN) blockAuth(MSG_SIGNIN_FAILED);
}

function blockAuth(text) {
  state.authBlocked = true;
  conn.pause('signed-out');
  ui.authNoticeText.textContent = text;
  ui.authNotice.hidden = false;
}

// useToken switches to a new token and reconnects with it at once.
function useToken(token) {
  state.token = token;
  state.tokenAccepted = false;
  state.authMisses = 0;
  state.authBlocked = false;
  session.set(KEYS.token, token);
  ui.authNotice.hidden = true;
  syncNameFields();
  renderMe();
  if (!ui.shell.hidden) conn.restart();
}

// With a token the display name comes from it: the name fields are unused.
function syncNameFields() {
  ui.welcomeName.disabled = ui.welcomeToken.value.trim() !== '';
  ui.nameInput.disabled = state.token !== '' || ui.tokenInput.value.trim() !== '';
}

function openNameDialog(focusToken) {
  ui.nameInput.value = state.name;
  ui.tokenInput.value = '';
  ui.nameError.textContent = '';
  syncNameFields();
  ui.nameDialog.showModal();
  if (focusToken || state.token) ui.tokenInput.focus();
}

// ----------------------------------------------------------------- rooms

function makeRoom(name) {
  const log = el('ol', { class: 'log', role: 'log', 'aria-label': `Messages in #${name}` });
  const outbox = el('ol', { class: 'log outbox', 'aria-label': 'Your messages being sent' });
  const intro = el('div', { class: 'intro' },
    el('div', { class: 'intro-icon', 'aria-hidden': 'true' }, '#'),
    el('h2', { class: 'intro-title' }, 'Welcome to #', el('bdi', null, name)),
    el('p', { class: 'intro-text' }, 'This is the start of the conversation the server still remembers. Everyone in the room sees what you write here.'));
  const pane = el('section', { class: 'pane', hidden: true, dataset: { room: name }, 'aria-label': `#${name}` }, intro, log, outbox);
  ui.panes.append(pane);
  return {
    name, pane, log, outbox,
    lastSeq: null, // highest seq shown (dedupe)
    syncedTo: null, // joined.seq of the last join whose replay is over
    joinedOnce: false,
    inRoom: false, // joined on the current socket
    sinceSent: null,
    replayUntil: null, replayTimer: 0, replayFirst: false, replayRecovered: true,
    members: new Map(), online: 0,
    unread: 0,
    lastGroup: null, lastDay: '',
    lastResync: 0,
    scrollTop: null,
    item: null, // its entry in the room list
    joining: false, // a join is in flight
  };
}

function addRoom(name, activate) {
  let room = state.rooms.get(name);
  if (!room) {
    const max = state.limits && state.limits.maxRooms;
    if (max && state.rooms.size >= max) {
      showToast(`You can be in at most ${max} rooms at once. Leave one first.`);
      return null;
    }
    room = makeRoom(name);
    state.rooms.set(name, room);
    if (conn.connected) sendJoin(room);
  }
  if (activate || state.active === null) setActive(name);
  saveRooms();
  renderRoomList();
  return room;
}

function leaveRoom(name) {
  const room = state.rooms.get(name);
  if (!room) return;
  // A join in flight is answered before a leave sent after it.
  if (room.inRoom || room.joining) conn.send(leaveEnvelope(name, `l${++state.refs}`));
  endReplayTimer(room);
  room.pane.remove();
  const names = [...state.rooms.keys()];
  const i = names.indexOf(name);
  state.rooms.delete(name);
  state.pending = state.pending.filter((p) => p.room !== name);
  if (state.active === name) {
    const next = names[i + 1] ?? names[i - 1] ?? null;
    state.active = null;
    if (next && next !== name) setActive(next);
  }
  saveRooms();
  renderAll();
  if (state.rooms.size === 0) ui.emptyJoin.focus();
}

function setActive(name) {
  const prev = state.rooms.get(state.active);
  if (prev) {
    prev.scrollTop = nearBottom() ? null : ui.scroller.scrollTop;
    prev.pane.hidden = true;
  }
  state.active = name;
  const room = state.rooms.get(name);
  if (room) {
    room.pane.hidden = false;
    room.unread = 0;
    if (room.scrollTop === null) scrollToBottom();
    else ui.scroller.scrollTop = room.scrollTop;
    try {
      history.replaceState(null, '', `#${name}`);
    } catch {
      // sandboxed frames: not important
    }
  }
  ui.jump.hidden = true;
  store.set(KEYS.active, name);
  renderAll();
}

function activeRoom() {
  return state.rooms.get(state.active) || null;
}

function sinceFor(room) {
  if (!room.joinedOnce) return 0n; // first join: the history the room still holds
  let s = room.lastSeq;
  if (room.syncedTo !== null && (s === null || room.syncedTo > s)) s = room.syncedTo;
  return s ?? 0n;
}

function sendJoin(room) {
  const ref = `j${++state.refs}`;
  state.joinRefs.set(ref, room.name);
  room.sinceSent = sinceFor(room);
  room.joining = conn.send(joinEnvelope(room.name, room.sinceSent, ref));
}

function onJoined(m) {
  const room = state.rooms.get(m.room);
  if (!room || m.seq === null) return;
  const S = m.seq;
  const since = room.sinceSent;
  const first = !room.joinedOnce;
  const repeat = room.inRoom; // a resync on the same socket
  room.inRoom = true;
  room.joining = false;
  room.joinedOnce = true;
  room.online = Number.isSafeInteger(m.online) ? m.online : room.online;
  if (Array.isArray(m.members)) {
    room.members = new Map();
    for (const u of m.members.map(user)) if (u.id) room.members.set(u.id, u);
  } else {
    room.members = null; // count-only: the room is too big for a list
  }

  if (!first && !repeat) {
    if (since !== null && S < since) {
      // The room was freed and created again: its counter restarted.
      room.lastSeq = S;
      room.syncedTo = S;
      addMarker(room, 'The room was restarted on the server. Earlier messages are no longer available.');
    } else if (m.recovered === false) {
      addMarker(room, 'You were disconnected for a while. Some messages sent meanwhile could not be recovered.');
    }
  }

  endReplayTimer(room);
  if (since !== null && since < S) {
    room.replayUntil = S;
    room.replayFirst = first;
    room.replayRecovered = m.recovered !== false;
    room.replayTimer = setTimeout(() => finishReplay(room), REPLAY_FALLBACK_MS);
  } else {
    room.replayUntil = S;
    room.replayRecovered = m.recovered !== false;
    finishReplay(room);
  }
  if (room.name === state.active) renderMembers();
  renderRoomList();
}

function endReplayTimer(room) {
  clearTimeout(room.replayTimer);
  room.replayTimer = 0;
}

// The replay after a join is over: everything up to joined.seq is known.
function finishReplay(room) {
  if (room.replayUntil === null || !state.rooms.has(room.name)) return;
  endReplayTimer(room);
  const S = room.replayUntil;
  room.replayUntil = null;
  room.replayFirst = false;
  if (room.syncedTo === null || S > room.syncedTo) room.syncedTo = S;
  // Messages whose fate was unknown and that the replay did not contain.
  for (const p of state.pending) {
    if (p.room !== room.name || p.state !== 'unknown') continue;
    if (room.replayRecovered || p.drained) setPending(p, 'queued'); // not sent: send it now
    else failPending(p, 'The connection dropped before the server confirmed this message. It may not have been delivered.');
  }
  flush();
}

function onMessage(m) {
  const room = state.rooms.get(m.room);
  if (!room || m.seq === null || typeof m.text !== 'string') return;
  // Drop anything already shown: replays can overlap what arrived live.
  if (room.lastSeq !== null && m.seq <= room.lastSeq) return;
  room.lastSeq = m.seq;
  const from = user(m.from);
  const own = state.myIds.has(from.id);
  settleEcho(room.name, from.id, m.text);
  const replaying = room.replayUntil !== null;
  // History shown on a first join is not "unread"; what arrives live is.
  const history = replaying && room.replayFirst && m.seq <= room.replayUntil;
  const visible = room.name === state.active && !document.hidden;
  const stick = room.name !== state.active || nearBottom();
  appendMessage(room, m.seq, from, m.text, Number.isFinite(m.ts) ? m.ts : Date.now(), own);
  if (!own && !history && !visible) room.unread++;
  if (room.name === state.active) {
    if (own || stick) scrollToBottom();
    else ui.jump.hidden = false;
  }
  if (replaying && m.seq >= room.replayUntil) finishReplay(room);
  renderRoomList();
  renderTitle();
}

function onPresence(m) {
  const room = state.rooms.get(m.room);
  if (!room || !room.inRoom) return;
  const joined = Array.isArray(m.joined) ? m.joined.map(user) : null;
  const left = Array.isArray(m.left) ? m.left.map(user) : null;
  if (!joined && !left) {
    room.members = null; // the room went count-only
  } else if (room.members) {
    // Idempotent set operations keyed by user id.
    for (const u of joined || []) if (u.id) room.members.set(u.id, u);
    for (const u of left || []) room.members.delete(u.id);
  }
  if (Number.isSafeInteger(m.online)) room.online = m.online;
  // A list that disagrees with the authoritative count is stale, and deltas
  // after count-only mode are only changes: a repeated join re-sends the
  // full list.
  const now = Date.now();
  const stale = room.members ? room.members.size !== room.online : Boolean(joined || left);
  if (stale && now - room.lastResync > RESYNC_MIN_MS) {
    room.lastResync = now;
    sendJoin(room);
  }
  if (room.name === state.active) renderMembers();
}

// ------------------------------------------------------------- rendering

// setText changes a node's text only when it differs (no needless
// mutations, no repeated announcements in live regions).
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function nearBottom() {
  const s = ui.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom() {
  ui.scroller.scrollTop = ui.scroller.scrollHeight;
  ui.jump.hidden = true;
}

function trim(room) {
  while (room.log.childElementCount > MAX_ITEMS) room.log.firstElementChild.remove();
}

function addDayIfNeeded(room, ts) {
  const day = dayKey(ts);
  if (day && day !== room.lastDay) {
    room.lastDay = day;
    room.lastGroup = null;
    room.log.append(el('li', { class: 'day', role: 'separator' }, el('span', null, dayLabel(ts))));
  }
}

function appendMessage(room, seq, from, text, ts, own) {
  addDayIfNeeded(room, ts);
  const key = own ? 'me' : from.id;
  const g = room.lastGroup;
  const cont = g !== null && g.key === key && g.name === from.name && ts - g.ts < GROUP_GAP_MS && ts >= g.ts;
  const li = el('li', {
    class: `msg ${cont ? 'cont' : 'head'}${own ? ' own' : ''}`,
    dataset: { seq: seq.toString(), author: from.id },
  });
  if (cont) {
    li.append(timeEl(ts, 'ts gutter'));
    // Screen readers read each item alone: say who wrote it.
    li.append(el('span', { class: 'visually-hidden' }, el('bdi', null, from.name), ': '));
  } else {
    li.append(avatar(from), el('div', { class: 'msg-head' },
      el('span', { class: 'author', dir: 'auto' }, from.name),
      own ? el('span', { class: 'tag' }, 'you') : null,
      timeEl(ts)));
  }
  li.append(el('div', { class: 'text', dir: 'auto' }, richText(text)));
  room.log.append(li);
  room.lastGroup = { key, name: from.name, ts };
  trim(room);
  renderOutboxHeads(room);
}

function addMarker(room, text) {
  room.lastGroup = null;
  room.log.append(el('li', { class: 'marker', role: 'note' }, el('span', null, text)));
  trim(room);
}

// The status is a live region: its words are announced when the state
// changes; the ticking seconds are shown but kept out of the announcement.
function renderStatus({ state: s, retryAt }) {
  clearInterval(state.statusTimer);
  ui.status.dataset.state = s;
  ui.retryNow.hidden = !(s === 'reconnecting' || s === 'offline');
  const waiting = s === 'reconnecting' && retryAt > Date.now();
  const words = {
    connected: 'Connected',
    connecting: 'Connecting…',
    offline: 'Offline',
    'signed-out': 'Signed out',
    reconnecting: waiting ? 'Reconnecting' : 'Reconnecting…',
  };
  setText(ui.statusText, words[s] || s);
  const tick = () => {
    const secs = Math.ceil((retryAt - Date.now()) / 1000);
    setText(ui.statusCount, waiting && secs > 0 ? ` in ${secs}s` : '');
  };
  tick();
  if (waiting) state.statusTimer = setInterval(tick, 200);
  ui.shell.classList.toggle('disconnected', s !== 'connected');
  renderComposer();
  renderMembers();
  renderRoomList();
  for (const p of state.pending) if (p.state === 'queued') setPending(p, 'queued');
  if (s === 'connected') flush();
}

function renderMe() {
  const me = state.me || { id: 'me', name: state.token ? 'Signing in…' : state.name || 'guest' };
  ui.meAvatar.replaceChildren(avatar(me));
  ui.meName.textContent = me.name;
}

// The room list is updated in place, so a focused room button keeps focus
// while messages arrive.
function renderRoomList() {
  let otherUnread = 0;
  const wanted = [];
  for (const room of state.rooms.values()) {
    const active = room.name === state.active;
    if (!active) otherUnread += room.unread;
    if (!room.item) {
      const badge = el('span', { class: 'badge', 'aria-hidden': 'true', hidden: true });
      const btn = el('button', {
        type: 'button', class: 'room-btn', dataset: { room: room.name },
        on: { click: () => { setActive(room.name); closeDrawers(); ui.text.focus(); } },
      }, el('span', { class: 'hash', 'aria-hidden': 'true' }, '#'), el('span', { class: 'room-name', dir: 'auto' }, room.name), badge);
      const leave = el('button', {
        type: 'button', class: 'room-leave', 'aria-label': `Leave #${room.name}`, title: `Leave #${room.name}`,
        on: { click: () => leaveRoom(room.name) },
      }, '×');
      room.item = { li: el('li', { class: 'room-item' }, btn, leave), btn, badge };
    }
    const { li, btn, badge } = room.item;
    if (active) btn.setAttribute('aria-current', 'page');
    else btn.removeAttribute('aria-current');
    btn.dataset.state = room.inRoom ? 'joined' : 'joining';
    btn.setAttribute('aria-label', room.unread > 0 ? `#${room.name}, ${room.unread} unread` : `#${room.name}`);
    badge.hidden = room.unread === 0;
    badge.textContent = room.unread > 99 ? '99+' : String(room.unread);
    wanted.push(li);
  }
  // Reconcile the list's children with the wanted order.
  wanted.forEach((li, i) => {
    if (ui.roomList.children[i] !== li) ui.roomList.insertBefore(li, ui.roomList.children[i] || null);
  });
  while (ui.roomList.children.length > wanted.length) ui.roomList.lastElementChild.remove();
  ui.openRoomsBadge.hidden = otherUnread === 0;
  ui.openRooms.setAttribute('aria-label', otherUnread > 0 ? `Rooms (${otherUnread} unread elsewhere)` : 'Rooms');
  renderTitle();
}

function renderTitle() {
  let unread = 0;
  for (const r of state.rooms.values()) unread += r.unread;
  const room = activeRoom();
  document.title = `${unread > 0 ? `(${unread}) ` : ''}${room ? `#${room.name} · ` : ''}chatgate`;
}

function sortedMembers(room) {
  return [...room.members.values()].sort((a, b) =>
    a.name.localeCompare(b.name, undefined, { sensitivity: 'base' }) || (a.id < b.id ? -1 : 1));
}

function renderMembers() {
  const room = activeRoom();
  const online = room ? room.online : 0;
  ui.onlineCount.textContent = String(online);
  ui.memberCountBadge.textContent = String(online);
  ui.toggleMembers.setAttribute('aria-label', `People in this room: ${online} online`);
  let sub = '';
  if (room && room.inRoom) sub = `${online} online`;
  else if (room) sub = conn.connected ? 'Joining…' : 'Not connected';
  ui.roomSub.textContent = sub;
  const items = [];
  if (room && room.members) {
    for (const u of sortedMembers(room)) {
      const me = state.myIds.has(u.id);
      items.push(el('li', { class: me ? 'member me' : 'member', dataset: { id: u.id } },
        el('span', { class: 'avatar-wrap' }, avatar(u, 'sm'), el('span', { class: 'presence-dot', 'aria-hidden': 'true' })),
        el('span', { class: 'member-name', dir: 'auto' }, u.name),
        me ? el('span', { class: 'tag' }, 'you') : null));
    }
  }
  ui.memberList.replaceChildren(...items);
  ui.membersNote.hidden = !room || room.members !== null;
}

function renderComposer() {
  const room = activeRoom();
  ui.composer.hidden = !room;
  ui.leaveRoom.hidden = !room;
  ui.toggleMembers.hidden = !room;
  if (!room) return;
  ui.text.placeholder = conn.connected ? `Message #${room.name}` : `Message #${room.name} (sent when you are back online)`;
  const text = ui.text.value;
  const max = state.limits && state.limits.maxText;
  const bytes = byteLength(text.trim());
  const over = max !== null && max !== undefined && bytes > max;
  if (max && text !== '') {
    ui.count.textContent = over ? `${bytes - max} bytes over the ${max}-byte limit` : `${bytes} / ${max}`;
    ui.count.dataset.level = over ? 'over' : bytes > max * 0.9 ? 'near' : 'ok';
  } else {
    ui.count.textContent = '';
    ui.count.dataset.level = 'ok';
  }
  ui.text.setAttribute('aria-invalid', String(over));
  ui.send.disabled = text.trim() === '' || over;
}

function renderAll() {
  const room = activeRoom();
  ui.empty.hidden = state.rooms.size > 0;
  if (room) ui.roomTitle.replaceChildren('#', el('bdi', null, room.name));
  else ui.roomTitle.textContent = 'chatgate';
  renderRoomList();
  renderMembers();
  renderComposer();
}

// --------------------------------------------------------- outgoing queue

const PENDING_LABEL = {
  queued: () => (!conn.connected ? 'Waiting for connection…' : 'Waiting to send…'),
  sending: () => 'Sending…',
  unknown: () => 'Checking whether it was delivered…',
  failed: () => 'Not sent',
};

function enqueue(roomName, text) {
  const room = state.rooms.get(roomName);
  if (!room) return;
  const me = state.me || { id: '', name: state.name || 'you' };
  const p = {
    ref: null, room: roomName, text, at: Date.now(), state: 'queued', userId: '', name: me.name, drained: false,
    li: null, stateEl: null, whyEl: null,
  };
  const stateEl = el('span', { class: 'pending-state' });
  const li = el('li', { class: 'msg own pending', dataset: { state: 'queued' } },
    el('span', { class: 'pending-gutter', 'aria-hidden': 'true' }),
    el('div', { class: 'text', dir: 'auto' }, richText(text)),
    el('div', { class: 'pending-foot' }, stateEl));
  p.li = li;
  p.stateEl = stateEl;
  state.pending.push(p);
  room.outbox.append(li);
  setPending(p, 'queued');
  renderOutboxHeads(room);
  if (roomName === state.active) scrollToBottom();
  flush();
}

// The first pending item carries the author header unless it continues
// the user's own group in the log.
function renderOutboxHeads(room) {
  const first = room.outbox.firstElementChild;
  for (const li of room.outbox.children) {
    const wantHead = li === first && !(room.lastGroup && room.lastGroup.key === 'me');
    const hasHead = li.classList.contains('head');
    if (wantHead === hasHead) continue;
    li.classList.toggle('head', wantHead);
    li.classList.toggle('cont', !wantHead);
    li.querySelector('.avatar')?.remove();
    li.querySelector('.msg-head')?.remove();
    if (wantHead) {
      const me = state.me || { id: 'me', name: state.name || 'you' };
      li.prepend(avatar(me), el('div', { class: 'msg-head' }, el('span', { class: 'author', dir: 'auto' }, me.name), el('span', { class: 'tag' }, 'you')));
    }
  }
}

function setPending(p, s) {
  p.state = s;
  p.li.dataset.state = s;
  p.stateEl.textContent = PENDING_LABEL[s]();
  if (s !== 'failed') {
    p.li.classList.remove('failed');
    p.whyEl?.remove();
    p.whyEl = null;
  }
}

function removePending(p) {
  state.pending = state.pending.filter((q) => q !== p);
  const room = state.rooms.get(p.room);
  p.li.remove();
  if (room) renderOutboxHeads(room);
}

function failPending(p, why) {
  setPending(p, 'failed');
  p.li.classList.add('failed');
  p.whyEl?.remove();
  const retry = el('button', {
    type: 'button', class: 'btn link small',
    'aria-label': `Retry sending “${p.text.slice(0, 40)}”`,
    on: { click: () => { setPending(p, 'queued'); flush(); } },
  }, 'Retry');
  const del = el('button', {
    type: 'button', class: 'btn link small danger',
    'aria-label': `Delete the unsent message “${p.text.slice(0, 40)}”`,
    on: { click: () => removePending(p) },
  }, 'Delete');
  p.whyEl = el('span', { class: 'pending-why' }, el('span', { class: 'why' }, why), retry, del);
  p.stateEl.after(p.whyEl);
}

// Our own message came back: it is in the log now, drop its placeholder.
// A connection's sends are sequenced in order, so the oldest match is it.
function settleEcho(roomName, fromId, text) {
  const p = state.pending.find((q) =>
    q.room === roomName && (q.state === 'sending' || q.state === 'unknown') && q.userId === fromId && q.text === text);
  if (p) removePending(p);
}

function onAck(m) {
  const p = state.pending.find((q) => q.ref === m.ref && q.state === 'sending');
  if (p) removePending(p); // the echo went unmatched; the ack settles it
}

function takeToken() {
  const b = state.bucket;
  const l = state.limits || {};
  const now = Date.now();
  if (l.rate && l.burst) {
    b.tokens = Math.min(l.burst, b.tokens + ((now - b.at) / 1000) * l.rate);
  }
  b.at = now;
  b.tokens -= 1;
}

function tokenWaitMs(backlog) {
  // A backlog (several messages waiting, e.g. after a reconnect) and
  // everything sent shortly after a rate_limited error are paced by the
  // advertised limits; otherwise a message typed by hand goes out at once
  // and the server is the judge.
  const l = state.limits || {};
  if (!(backlog || Date.now() < state.slowUntil) || !l.rate || !l.burst) return 0;
  const b = state.bucket;
  const tokens = Math.min(l.burst, b.tokens + ((Date.now() - b.at) / 1000) * l.rate);
  return tokens >= 1 ? 0 : Math.ceil(((1 - tokens) / l.rate) * 1000);
}

// Send what is queued, oldest first, once its room is joined and settled.
function flush() {
  clearTimeout(state.flushTimer);
  if (!conn.connected) return;
  const now = Date.now();
  if (now < state.cooldownUntil) {
    state.flushTimer = setTimeout(flush, state.cooldownUntil - now);
    return;
  }
  const blocked = new Set(); // rooms with an earlier message still unsettled
  const queued = state.pending.filter((p) => p.state === 'queued');
  for (const p of state.pending) {
    const room = state.rooms.get(p.room);
    if (!room) continue;
    // Our sends are handled after our join, so they need not wait for the
    // replay, but they must not overtake a message whose fate is unknown.
    if (p.state === 'unknown' || !room.inRoom) blocked.add(p.room);
    if (p.state !== 'queued' || blocked.has(p.room)) continue;
    const wait = tokenWaitMs(queued.length > 1);
    if (wait > 0) {
      state.flushTimer = setTimeout(flush, wait);
      return;
    }
    p.ref = `s${++state.refs}`;
    p.userId = state.me.id;
    if (!conn.send(sendEnvelope(p.room, p.text, p.ref))) return;
    takeToken();
    setPending(p, 'sending');
  }
}

function onError(m) {
  const text = friendlyError(m);
  const wait = Number.isFinite(m.retry_after_ms) && m.retry_after_ms > 0 ? m.retry_after_ms : null;
  const ref = typeof m.ref === 'string' ? m.ref : '';
  const p = ref ? state.pending.find((q) => q.ref === ref && q.state === 'sending') : null;
  if (p) {
    failPending(p, text);
    if (m.code === 'rate_limited') startCooldown(wait ?? 1000);
    return;
  }
  if (ref.startsWith('l')) return; // a leave racing a failed join: nothing to undo
  const roomName = ref ? state.joinRefs.get(ref) : undefined;
  if (roomName !== undefined) {
    state.joinRefs.delete(ref);
    const room = state.rooms.get(roomName);
    if (!room) return;
    room.joining = false;
    if (m.code === 'rate_limited' || m.code === 'unavailable' || (m.code === 'room_limit' && wait)) {
      setTimeout(() => {
        if (state.rooms.get(roomName) === room && conn.connected && !room.inRoom) sendJoin(room);
      }, wait ?? 1000);
      return;
    }
    showToast(...(m.code === 'forbidden' ? ['You are not allowed in #', el('bdi', null, roomName)] : ['Could not join #', el('bdi', null, roomName), `: ${text}`]));
    leaveRoom(roomName);
    return;
  }
  showToast(text);
}

function friendlyError(m) {
  const secs = Number.isFinite(m.retry_after_ms) ? Math.max(1, Math.ceil(m.retry_after_ms / 1000)) : null;
  switch (m.code) {
    case 'rate_limited':
      return secs ? `You’re sending messages too quickly. Try again in ${secs}s.` : 'You’re sending messages too quickly.';
    case 'too_large': return 'This message is too long.';
    case 'not_joined': return 'You’re not in this room any more.';
    case 'invalid_room': return 'That room name is not allowed.';
    case 'room_limit': return secs ? 'The server is full right now. Try again shortly.' : 'You’re in too many rooms already.';
    case 'unavailable': return 'The server is busy. Try again shortly.';
    case 'internal': return 'Something went wrong on the server.';
    case 'forbidden': return 'You are not allowed to do that.';
    case 'bad_request':
    case 'unknown_type': return 'The server did not understand a request from this page.';
    default: return typeof m.message === 'string' && m.message ? m.message : 'Something went wrong.';
  }
}

function startCooldown(ms) {
  const now = Date.now();
  state.cooldownUntil = Math.max(state.cooldownUntil, now + ms);
  state.slowUntil = state.cooldownUntil + SLOW_MODE_MS;
  // The refused send used no token; the server's bucket reaches one token
  // in ms: set the mirror to match.
  const rate = state.limits && state.limits.rate;
  if (rate) state.bucket = { tokens: 1 - (ms / 1000) * rate, at: now };
  clearInterval(state.cooldownTimer);
  const tick = () => {
    const left = state.cooldownUntil - Date.now();
    if (left <= 0) {
      clearInterval(state.cooldownTimer);
      ui.ratelimit.hidden = true;
      flush();
      return;
    }
    setText(ui.ratelimitText, `Slow down — you’re sending messages faster than this server allows. You can send again in ${Math.ceil(left / 1000)}s. Messages you write meanwhile wait their turn.`);
    ui.ratelimit.hidden = false;
  };
  tick();
  state.cooldownTimer = setInterval(tick, 250);
  for (const q of state.pending) if (q.state === 'queued') setPending(q, 'queued');
}

// ------------------------------------------------------------------ toast

// showToast shows a notice made of strings and nodes (user-supplied parts
// come as their own isolated elements).
function showToast(...parts) {
  clearTimeout(state.toastTimer);
  ui.toastText.replaceChildren(...parts);
  ui.toast.hidden = false;
  state.toastTimer = setTimeout(() => {
    ui.toast.hidden = true;
  }, TOAST_MS);
}

// ---------------------------------------------------------------- drawers

const narrow = window.matchMedia('(max-width: 759px)');
const mediumOrNarrow = window.matchMedia('(max-width: 1099px)');

function closeDrawers() {
  ui.shell.classList.remove('rooms-open');
  if (mediumOrNarrow.matches) ui.shell.classList.remove('members-open');
  syncDrawers();
}

function syncDrawers() {
  const roomsOpen = ui.shell.classList.contains('rooms-open') && narrow.matches;
  const membersShown = mediumOrNarrow.matches
    ? ui.shell.classList.contains('members-open')
    : !ui.shell.classList.contains('members-closed');
  ui.openRooms.setAttribute('aria-expanded', String(roomsOpen));
  ui.toggleMembers.setAttribute('aria-expanded', String(membersShown));
  ui.scrim.hidden = !(roomsOpen || (mediumOrNarrow.matches && membersShown));
}

function toggleMembers() {
  if (mediumOrNarrow.matches) {
    ui.shell.classList.remove('rooms-open');
    ui.shell.classList.toggle('members-open');
  } else {
    ui.shell.classList.toggle('members-closed');
  }
  syncDrawers();
  if (ui.shell.classList.contains('members-open')) ui.closeMembers.focus();
}

// ------------------------------------------------------------------- forms

function roomProblem(name) {
  return validRoom(name) ? '' : 'Room names use letters, digits, “.”, “_” and “-” (up to 64).';
}

function autosize() {
  if (window.CSS && CSS.supports('field-sizing', 'content')) return;
  ui.text.style.height = 'auto';
  ui.text.style.height = `${Math.min(ui.text.scrollHeight, 200)}px`;
}

function submitComposer() {
  const room = activeRoom();
  const text = ui.text.value.trim();
  if (!room || text === '') return;
  const max = state.limits && state.limits.maxText;
  if (max && byteLength(text) > max) {
    showToast(`This message is too long: the limit is ${max} bytes.`);
    return;
  }
  // Escapes make the JSON frame longer than the text; a frame over the
  // server's frame limit (not announced; 32 KiB by default) closes the
  // connection, so refuse it here. The gateway's frame limit always holds
  // a text of max_text_bytes at six bytes per byte plus 492, so this only
  // bites a text over the text limit.
  if (byteLength(sendEnvelope(room.name, text, 's0000000000')) > Math.max(FRAME_LIMIT, 6 * (max || 0) + 492)) {
    showToast('This message has too many special characters to send. Please shorten it.');
    return;
  }
  ui.text.value = '';
  autosize();
  renderComposer();
  enqueue(room.name, text);
}

function start(name, room) {
  if (!state.token) {
    state.name = name;
    store.set(KEYS.name, name);
  }
  ui.welcome.hidden = true;
  ui.shell.hidden = false;
  renderMe();
  const rooms = savedRooms();
  const active = room || store.get(KEYS.active);
  for (const r of rooms) addRoom(r, false);
  if (room) addRoom(room, true);
  if (state.rooms.size === 0) addRoom(DEFAULT_ROOM, true);
  if (active && state.rooms.has(active)) setActive(active);
  renderAll();
  syncDrawers();
  conn.start();
  ui.text.focus();
}

function roomFromHash() {
  try {
    const name = decodeURIComponent(location.hash.slice(1));
    return validRoom(name) ? name : '';
  } catch {
    return ''; // a malformed escape in the URL
  }
}

// takeFragmentToken reads a "#token=…" link and removes the token from the
// address bar (and so from the history) at once.
function takeFragmentToken() {
  const f = fragmentToken(location.hash);
  if (!f.found) return '';
  try {
    history.replaceState(null, '', `${location.pathname}${location.search}${f.rest}`);
  } catch {
    location.hash = f.rest; // sandboxed frames: at least clear it
  }
  return f.token && tokenProblem(f.token) === '' ? f.token : '';
}

function init() {
  const linked = takeFragmentToken();
  if (linked) session.set(KEYS.token, linked);
  state.token = linked || session.get(KEYS.token) || '';
  if (tokenProblem(state.token) !== '') state.token = '';
  const fromHash = roomFromHash();
  const savedName = store.get(KEYS.name);

  ui.welcomeForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = cleanToken(ui.welcomeToken.value);
    const name = token ? '' : ui.welcomeName.value.trim();
    const room = ui.welcomeRoom.value.trim() || DEFAULT_ROOM;
    const nProblem = nameProblem(name);
    const rProblem = roomProblem(room);
    const tProblem = token ? tokenProblem(token) : '';
    ui.welcomeName.setAttribute('aria-invalid', String(nProblem !== ''));
    ui.welcomeRoom.setAttribute('aria-invalid', String(rProblem !== ''));
    ui.welcomeToken.setAttribute('aria-invalid', String(tProblem !== ''));
    ui.welcomeError.textContent = nProblem || rProblem || tProblem;
    if (nProblem) ui.welcomeName.focus();
    else if (rProblem) ui.welcomeRoom.focus();
    else if (tProblem) ui.welcomeToken.focus();
    else {
      if (token) useToken(token);
      ui.welcomeToken.value = '';
      start(name, room);
    }
  });
  ui.welcomeToken.addEventListener('input', syncNameFields);
  ui.tokenInput.addEventListener('input', syncNameFields);
  ui.authFix.addEventListener('click', () => openNameDialog(true));

  ui.joinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = ui.joinRoom.value.trim().replace(/^#/, '');
    const problem = name === '' ? 'Type a room name first.' : roomProblem(name);
    ui.joinError.textContent = problem;
    ui.joinRoom.setAttribute('aria-invalid', String(problem !== ''));
    if (problem) return;
    if (addRoom(name, true)) {
      ui.joinRoom.value = '';
      closeDrawers();
      ui.text.focus();
    }
  });
  ui.emptyJoin.addEventListener('click', () => {
    addRoom(DEFAULT_ROOM, true);
    ui.text.focus();
  });

  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitComposer();
    ui.text.focus();
  });
  ui.text.addEventListener('keydown', (ev) => {
    // Enter sends; Shift+Enter is a new line; never interrupt an IME.
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
      ev.preventDefault();
      submitComposer();
    }
  });
  ui.text.addEventListener('input', () => {
    autosize();
    renderComposer();
  });

  ui.leaveRoom.addEventListener('click', () => {
    if (state.active) leaveRoom(state.active);
  });
  ui.retryNow.addEventListener('click', () => conn.reconnectNow());
  ui.jump.addEventListener('click', scrollToBottom);
  ui.scroller.addEventListener('scroll', () => {
    if (nearBottom()) ui.jump.hidden = true;
  }, { passive: true });
  ui.toastClose.addEventListener('click', () => {
    ui.toast.hidden = true;
  });

  ui.openRooms.addEventListener('click', () => {
    ui.shell.classList.remove('members-open');
    ui.shell.classList.add('rooms-open');
    syncDrawers();
    ui.roomList.querySelector('button')?.focus();
  });
  ui.closeRooms.addEventListener('click', () => {
    closeDrawers();
    ui.openRooms.focus();
  });
  ui.toggleMembers.addEventListener('click', toggleMembers);
  ui.closeMembers.addEventListener('click', () => {
    closeDrawers();
    ui.toggleMembers.focus();
  });
  ui.scrim.addEventListener('click', closeDrawers);
  narrow.addEventListener('change', syncDrawers);
  mediumOrNarrow.addEventListener('change', syncDrawers);

  ui.changeName.addEventListener('click', () => openNameDialog(false));
  ui.nameCancel.addEventListener('click', () => {
    ui.tokenInput.value = '';
    ui.nameDialog.close();
  });
  ui.nameDialog.addEventListener('close', () => {
    ui.tokenInput.value = ''; // the token stays out of the DOM
  });
  ui.nameForm.addEventListener('submit', (ev) => {
    const token = cleanToken(ui.tokenInput.value);
    if (token || state.authBlocked) {
      const problem = token ? tokenProblem(token) : 'Paste a fresh token to reconnect.';
      ui.nameError.textContent = problem;
      ui.tokenInput.setAttribute('aria-invalid', String(problem !== ''));
      if (problem) {
        ev.preventDefault();
        ui.tokenInput.focus();
        return;
      }
      ui.tokenInput.value = '';
      useToken(token);
      return;
    }
    if (state.token) return; // the name comes from the token
    const name = ui.nameInput.value.trim();
    const problem = nameProblem(name);
    ui.nameError.textContent = problem;
    ui.nameInput.setAttribute('aria-invalid', String(problem !== ''));
    if (problem) {
      ev.preventDefault();
      return;
    }
    if (name !== state.name) {
      state.name = name;
      store.set(KEYS.name, name);
      renderMe();
      conn.restart();
    }
  });

  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && (ui.shell.classList.contains('rooms-open') || ui.shell.classList.contains('members-open'))) {
      closeDrawers();
      return;
    }
    // Alt+↑ / Alt+↓ switch rooms from anywhere.
    if (ev.altKey && (ev.key === 'ArrowUp' || ev.key === 'ArrowDown') && state.rooms.size > 1) {
      ev.preventDefault();
      const names = [...state.rooms.keys()];
      const i = names.indexOf(state.active);
      const next = names[(i + (ev.key === 'ArrowDown' ? 1 : names.length - 1)) % names.length];
      setActive(next);
    }
  });
  document.addEventListener('visibilitychange', () => {
    const room = activeRoom();
    if (!document.hidden && room && room.unread) {
      room.unread = 0;
      renderRoomList();
    }
  });
  window.addEventListener('hashchange', () => {
    const token = takeFragmentToken();
    if (token) {
      useToken(token);
      if (ui.shell.hidden) start('', roomFromHash());
      return;
    }
    const name = roomFromHash();
    if (!ui.shell.hidden && name && name !== state.active) addRoom(name, true);
  });

  syncNameFields();
  if (state.token) {
    // Signed in by a link or earlier in this tab: the token names the user.
    state.name = savedName ?? '';
    start('', fromHash);
  } else if (savedName !== null) {
    start(savedName, fromHash);
  } else {
    if (fromHash) ui.welcomeRoom.value = fromHash;
    ui.welcome.hidden = false;
    ui.welcomeName.focus();
  }
}

init();
