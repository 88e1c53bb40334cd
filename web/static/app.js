// chatgate — the browser client for wire protocol v1 (docs/protocol.md).
//
// Several rooms over one WebSocket, optimistic sending, reconnects that
// lose nothing and show nothing twice. Everything a user or the server
// supplies reaches the DOM as text (textContent / text nodes) only.
//
// Each tab is a person of its own (js/storage.js, js/tabs.js); outgoing
// messages keep their order and their pace in js/sendqueue.js.

import { $, el, timeEl, dayKey, dayLabel, avatar, richText } from './js/dom.js';
import { Connection } from './js/connection.js';
import { mentionMatcher } from './js/mentions.js';
import { MentionAlerts } from './js/notify.js';
import { FAILED, QUEUED, RETRYING, SENDING, SendQueue, UNKNOWN, sendLimits } from './js/sendqueue.js';
import { KEYS, browserStore, migrate, tabStore } from './js/storage.js';
import { Tabs } from './js/tabs.js';
import { TypingSender, TypingView, typingParts } from './js/typing.js';
import {
  CLIENT_FAULT_CODES, byteLength, cleanToken, features, fragmentToken, guestCredential, joinEnvelope,
  leaveEnvelope, nameKey, nameProblem, sendEnvelope, socketURL, subprotocols, tokenProblem, typingEnvelope, validRoom,
} from './js/wire.js';

const GROUP_GAP_MS = 5 * 60_000; // a pause this long starts a new group
const MAX_ITEMS = 1000; // per room; older items are dropped from the DOM
const MAX_AUTHORS = 500; // per room: names remembered for @mentions in count-only rooms
const REPLAY_FALLBACK_MS = 2500; // a replay that never reaches joined.seq
const REJOIN_REPORT_MS = 5000; // report gaps even if a rejoin never answers
const RESYNC_MIN_MS = 10_000; // at most one member-list resync per room
const TOAST_MS = 8000;
const GAP_TOAST_MS = 15_000;
const HOLD_BANNER_MS = 1000; // a pacing wait at least this long is explained
const FRAME_LIMIT = 32 << 10; // the gateway's default --max-frame-bytes
const KICKED = 4403; // close code: the application removed this user (server API)
const DEFAULT_ROOM = 'lobby';
// A token that worked before may meet a gateway that is restarting: allow a
// few failed handshakes (with backoff) before calling it refused.
const AUTH_MISSES_KNOWN_TOKEN = 3;
const MSG_SIGNIN_FAILED = 'Sign-in failed: the token was refused or has expired — paste a fresh token';
const MSG_EXPIRED = 'Your session expired — paste a fresh token to reconnect';

const ui = {
  welcome: $('welcome'), welcomeForm: $('welcome-form'), welcomeName: $('welcome-name'),
  welcomeNameHelp: $('welcome-name-help'),
  welcomeRoom: $('welcome-room'), welcomeToken: $('welcome-token'), welcomeError: $('welcome-error'),
  authNotice: $('auth-notice'), authNoticeText: $('auth-notice-text'), authFix: $('auth-fix'),
  shell: $('shell'), sidebar: $('sidebar'), scrim: $('scrim'), members: $('members'),
  openRooms: $('open-rooms'), openRoomsBadge: $('open-rooms-badge'), closeRooms: $('close-rooms'),
  roomList: $('room-list'), joinForm: $('join-form'), joinRoom: $('join-room'), joinError: $('join-error'),
  meAvatar: $('me-avatar'), meName: $('me-name'), changeName: $('change-name'), notifyToggle: $('notify-toggle'),
  roomTitle: $('room-title'), roomSub: $('room-sub'),
  status: $('status'), statusText: $('status-text'), statusCount: $('status-count'), retryNow: $('retry-now'),
  toggleMembers: $('toggle-members'), memberCountBadge: $('member-count-badge'), leaveRoom: $('leave-room'),
  toast: $('toast'), toastText: $('toast-text'), toastClose: $('toast-close'),
  scroller: $('scroller'), panes: $('panes'), empty: $('empty'), emptyJoin: $('empty-join'), jump: $('jump'),
  ratelimit: $('ratelimit'), ratelimitText: $('ratelimit-text'), ratelimitCount: $('ratelimit-count'),
  typing: $('typing'),
  composer: $('composer'), text: $('composer-text'), send: $('send'), count: $('composer-count'),
  onlineCount: $('online-count'), memberList: $('member-list'), membersNote: $('members-note'),
  closeMembers: $('close-members'),
  nameDialog: $('name-dialog'), nameForm: $('name-form'), nameInput: $('name-input'), tokenInput: $('token-input'),
  nameError: $('name-error'), nameCancel: $('name-cancel'),
};

const state = {
  name: '', // the name asked for (may be '' for a guest name)
  // The access token, if any. It lives here, in this tab's sessionStorage
  // (for reloads) and in the handshake's subprotocols; never in
  // localStorage, the URL, the DOM or a log.
  token: '',
  // A guest credential from welcome, from a gateway that issues them: kept
  // like the token, offered on reconnects so that this tab stays the same
  // guest. Today's gateway issues none.
  guest: '',
  tokenAccepted: false, // a welcome arrived with this token
  authMisses: 0, // handshakes failed in a row with this token
  authBlocked: false, // waiting for a fresh token
  me: null, // {id, name} of the current connection
  myIds: new Set(), // every user id this page has had (one per connection)
  limits: null,
  features: new Set(), // optional envelope types the gateway announced
  rooms: new Map(), // name → room, in sidebar order
  active: null, // name of the room on screen
  refs: 0,
  joinRefs: new Map(), // join ref → room name
  // The rejoins after a reconnect, so that rooms whose history has a gap
  // are reported in one notice: {waiting: Set of room names, gaps: [names], timer}.
  rejoin: null,
  hold: null, // the send queue waits for time to pass: {until, byServer}
  holdTimer: 0,
  typingTimer: 0,
  statusTimer: 0,
  toastTimer: 0,
};

const tabs = new Tabs();
const alerts = new MentionAlerts();
const typingView = new TypingView();
const typingSender = new TypingSender();

function saveRooms() {
  tabStore.set(KEYS.rooms, JSON.stringify([...state.rooms.keys()]));
  tabStore.set(KEYS.active, state.active);
  if (state.active) browserStore.set(KEYS.lastRoom, state.active);
}

function savedRooms() {
  try {
    const list = JSON.parse(tabStore.get(KEYS.rooms) || '[]');
    return Array.isArray(list) ? list.filter(validRoom) : [];
  } catch {
    return [];
  }
}

// ------------------------------------------------------------ connection

const conn = new Connection({
  // With a token the gateway takes the name from it: no name parameter.
  url: () => socketURL(location, state.token ? '' : state.name),
  protocols: () => subprotocols(state.token, state.guest),
  onWelcome,
  onEnvelope,
  onClose,
  onStatus: renderStatus,
});

const queue = new SendQueue({
  transmit: (item) => conn.send(sendEnvelope(item.room, item.text, item.ref)),
  ready: (name) => {
    const room = state.rooms.get(name);
    return Boolean(room && room.inRoom && conn.connected);
  },
  onChange: renderPending,
  onSettled: removePendingView,
  onFailed: showFailed,
  onHold: (hold) => {
    state.hold = hold;
    renderHold();
  },
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
  } else {
    state.guest = guestCredential(w);
    tabStore.set(KEYS.guest, state.guest || null);
  }
  state.me = user(w.user);
  state.myIds.add(state.me.id);
  state.features = features(w);
  const l = w.limits && typeof w.limits === 'object' ? w.limits : {};
  state.limits = {
    maxText: Number.isSafeInteger(l.max_text_bytes) && l.max_text_bytes > 0 ? l.max_text_bytes : null,
    maxRooms: Number.isSafeInteger(l.max_rooms) && l.max_rooms > 0 ? l.max_rooms : null,
    ...sendLimits(l),
  };
  renderMe();
  renderComposer();
  renderTyping();
  startRejoin();
  for (const room of state.rooms.values()) sendJoin(room);
  queue.connected(state.me.id, state.limits);
}

function onEnvelope(env) {
  switch (env.type) {
    case 'joined': return onJoined(env);
    case 'message': return onMessage(env);
    case 'ack': return queue.acked(env.ref);
    case 'presence': return onPresence(env);
    case 'error': return onError(env);
    case 'typing': return onTyping(env);
    default: return undefined; // 'left' and unknown types: nothing to do
  }
}

// The socket is gone. The send queue decides what each unconfirmed
// message became.
function onClose(info) {
  for (const room of state.rooms.values()) {
    room.inRoom = false;
    room.joining = false;
    room.recheck = false;
    endReplayTimer(room);
    room.replayUntil = null;
  }
  state.joinRefs.clear();
  if (state.rejoin) {
    clearTimeout(state.rejoin.timer);
    state.rejoin.waiting.clear(); // the gaps found so far wait for the next rejoin
  }
  // A drain (a clean 1001) writes every ack before its close frame, so a
  // message without one was not sent even if the replay cannot tell.
  queue.disconnected({ clientFault: CLIENT_FAULT_CODES.has(info.code), drained: info.code === 1001 && info.wasClean === true });
  if (info.code === 1008) showToast('The server disconnected this page for sending too much. Reconnecting shortly.');
  if (info.code === KICKED) {
    // The application's backend removed this user (the server API): say
    // so and do not come back on our own; whether they may return is the
    // application's call (protocol.md, "Reconnect with backoff").
    conn.pause('kicked');
    showToast('The service disconnected you. Use Reconnect if you want to come back.');
  }
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
  tabStore.set(KEYS.token, token);
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
    recheck: false, // a rejoin is asked for to settle a message the gateway may have stored
    sinceSent: null,
    replayUntil: null, replayTimer: 0, replayFirst: false, replayRecovered: true,
    members: new Map(), online: 0,
    authors: new Map(), // name key → name of recent writers (for @mentions)
    matcher: null, // @mention finder for the names above; null: rebuild
    unread: 0,
    mentions: 0, // unread messages that mention the user
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
  queue.dropRoom(name);
  typingView.forget(name);
  rejoinDone(name, false);
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
    room.mentions = 0;
    if (room.scrollTop === null) scrollToBottom();
    else ui.scroller.scrollTop = room.scrollTop;
    try {
      history.replaceState(null, '', `#${name}`);
    } catch {
      // sandboxed frames: not important
    }
  }
  ui.jump.hidden = true;
  saveRooms();
  renderAll();
  renderTyping();
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

// ------------------------------------------------------- rejoin and gaps

// After a reconnect every room is joined again with since. Rooms whose
// history has a gap (recovered: false, or a room the server restarted)
// get a divider where messages are missing, and the page says so once,
// in one notice naming them all, when every rejoin has been answered. If
// the connection drops again before that, the gaps found so far are
// reported with those of the next rejoin.
function startRejoin() {
  const gaps = endRejoin();
  const waiting = new Set([...state.rooms.values()].filter((r) => r.joinedOnce).map((r) => r.name));
  if (waiting.size === 0) return;
  state.rejoin = { waiting, gaps, timer: setTimeout(reportGaps, REJOIN_REPORT_MS) };
}

// endRejoin stops waiting for rejoins; it returns the gaps not yet reported.
function endRejoin() {
  const r = state.rejoin;
  if (r) clearTimeout(r.timer);
  state.rejoin = null;
  return r ? r.gaps : [];
}

// rejoinDone notes that the rejoin of a room is over (gap: with a gap).
function rejoinDone(name, gap) {
  const r = state.rejoin;
  if (!r || !r.waiting.has(name)) return;
  r.waiting.delete(name);
  if (gap && !r.gaps.includes(name)) r.gaps.push(name);
  if (r.waiting.size === 0) reportGaps();
}

function reportGaps() {
  const r = state.rejoin;
  endRejoin();
  const gaps = r ? r.gaps.filter((n) => state.rooms.has(n)) : [];
  if (gaps.length === 0) return;
  const parts = ['You were disconnected for a while. Some messages sent meanwhile could not be recovered in '];
  gaps.forEach((name, i) => {
    if (i > 0) parts.push(i === gaps.length - 1 ? ' and ' : ', ');
    parts.push('#', el('bdi', null, name));
  });
  parts.push('.');
  showNotice({ ms: GAP_TOAST_MS, kind: 'gap' }, parts);
}

function addGap(room) {
  room.lastGroup = null;
  room.log.append(el('li', { class: 'gap', role: 'separator', 'aria-label': 'Some messages are missing here' },
    el('span', null, 'Some messages are missing here')));
  trim(room);
}

function onJoined(m) {
  const room = state.rooms.get(m.room);
  if (!room || m.seq === null) return;
  const S = m.seq;
  const since = room.sinceSent;
  const first = !room.joinedOnce;
  const repeat = room.inRoom; // a resync (or a check) on the same socket
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
  room.matcher = null;

  if (!first && !repeat) {
    let gap = false;
    if (since !== null && S < since) {
      // The room was freed and created again: its counter restarted.
      room.lastSeq = S;
      room.syncedTo = S;
      gap = true;
    } else if (m.recovered === false) {
      gap = true;
    }
    if (gap) addGap(room);
    rejoinDone(room.name, gap);
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
  room.recheck = false;
  if (room.syncedTo === null || S > room.syncedTo) room.syncedTo = S;
  // Messages whose fate was unknown and that the replay did not contain.
  queue.replayed(room.name, room.replayRecovered);
}

// matcherFor finds @mentions of the room's members, its recent writers and
// the user.
function matcherFor(room) {
  if (!room.matcher) {
    const names = [...room.authors.values()];
    if (room.members) for (const u of room.members.values()) names.push(u.name);
    room.matcher = mentionMatcher(names, myName());
  }
  return room.matcher;
}

function myName() {
  return state.me ? state.me.name : state.name;
}

function noteAuthor(room, name) {
  const key = nameKey(name);
  if (room.authors.has(key)) return;
  if (room.authors.size >= MAX_AUTHORS) room.authors.delete(room.authors.keys().next().value);
  room.authors.set(key, name);
  room.matcher = null;
}

function onMessage(m) {
  const room = state.rooms.get(m.room);
  if (!room || m.seq === null || typeof m.text !== 'string') return;
  // Drop anything already shown: replays can overlap what arrived live.
  if (room.lastSeq !== null && m.seq <= room.lastSeq) return;
  room.lastSeq = m.seq;
  const from = user(m.from);
  const own = state.myIds.has(from.id);
  queue.echoed(room.name, from.id, m.text);
  noteAuthor(room, from.name);
  if (typingView.names(room.name, Date.now()).length) {
    typingView.stopped(room.name, from.id);
    if (room.name === state.active) renderTyping();
  }
  const replaying = room.replayUntil !== null;
  // History shown on a first join is not "unread"; what arrives live is.
  const history = replaying && room.replayFirst && m.seq <= room.replayUntil;
  const visible = room.name === state.active && !document.hidden;
  const stick = room.name !== state.active || nearBottom();
  const marks = matcherFor(room);
  const mentionsMe = !own && marks(m.text).some((x) => x.me);
  appendMessage(room, m.seq, from, m.text, Number.isFinite(m.ts) ? m.ts : Date.now(), own, marks, mentionsMe);
  if (!own && !history && !visible) {
    room.unread++;
    if (mentionsMe) room.mentions++;
  }
  // Notify of a mention only as it happens, not for what a replay brings.
  if (mentionsMe && !replaying && document.hidden) {
    alerts.show({
      room: room.name, from: from.name, text: m.text,
      onClick: () => {
        if (state.rooms.has(room.name)) setActive(room.name);
      },
    });
  }
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
  for (const u of left || []) typingView.stopped(room.name, u.id);
  room.matcher = null;
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
  if (room.name === state.active) {
    renderMembers();
    renderTyping();
  }
}

// ---------------------------------------------------------------- typing

// Only a gateway that announces the "typing" feature sends these (see
// js/typing.js); the page shows who is typing in the room on screen.
function onTyping(m) {
  const room = state.rooms.get(m.room);
  if (!room || !state.features.has('typing')) return;
  const from = user(m.from);
  if (!from.id || state.myIds.has(from.id)) return;
  typingView.seen(room.name, from, Date.now());
  if (room.name === state.active) renderTyping();
}

function renderTyping() {
  clearTimeout(state.typingTimer);
  const room = activeRoom();
  const now = Date.now();
  const names = room && state.features.has('typing') ? typingView.names(room.name, now) : [];
  const parts = typingParts(names).map((p) => (typeof p === 'string' ? p : el('bdi', null, p.name)));
  ui.typing.replaceChildren(...parts);
  ui.typing.hidden = parts.length === 0;
  const next = room ? typingView.nextChange(room.name, now) : null;
  if (next !== null) state.typingTimer = setTimeout(renderTyping, Math.max(50, next - now));
}

// typed: the composer changed; tell the room (if the gateway relays it).
function typed() {
  const room = activeRoom();
  if (!room || !room.inRoom || !state.features.has('typing') || ui.text.value.trim() === '') return;
  if (typingSender.due(room.name, Date.now())) conn.send(typingEnvelope(room.name));
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

function appendMessage(room, seq, from, text, ts, own, marks, mentionsMe) {
  addDayIfNeeded(room, ts);
  const key = own ? 'me' : from.id;
  const g = room.lastGroup;
  const cont = g !== null && g.key === key && g.name === from.name && ts - g.ts < GROUP_GAP_MS && ts >= g.ts;
  const li = el('li', {
    class: `msg ${cont ? 'cont' : 'head'}${own ? ' own' : ''}${mentionsMe ? ' mentions-me' : ''}`,
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
  li.append(el('div', { class: 'text', dir: 'auto' }, richText(text, marks)));
  room.log.append(li);
  room.lastGroup = { key, name: from.name, ts };
  trim(room);
  renderOutboxHeads(room);
}

// The status is a live region: its words are announced when the state
// changes; the ticking seconds are shown but kept out of the announcement.
function renderStatus({ state: s, retryAt }) {
  clearInterval(state.statusTimer);
  ui.status.dataset.state = s;
  ui.retryNow.hidden = !(s === 'reconnecting' || s === 'offline' || s === 'kicked');
  setText(ui.retryNow, s === 'kicked' ? 'Reconnect' : 'Retry now');
  const waiting = s === 'reconnecting' && retryAt > Date.now();
  const words = {
    connected: 'Connected',
    connecting: 'Connecting…',
    offline: 'Offline',
    'signed-out': 'Signed out',
    kicked: 'Disconnected by the service',
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
  for (const item of queue.items) if (item.state === QUEUED) renderPending(item);
}

function renderMe() {
  const me = state.me || { id: 'me', name: state.token ? 'Signing in…' : state.name || 'guest' };
  ui.meAvatar.replaceChildren(avatar(me));
  ui.meName.textContent = me.name;
  for (const room of state.rooms.values()) room.matcher = null; // mentions of the new name
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
    let label = `#${room.name}`;
    if (room.unread > 0) label += `, ${room.unread} unread`;
    if (room.mentions > 0) label += room.mentions === 1 ? ', 1 mentions you' : `, ${room.mentions} mention you`;
    btn.setAttribute('aria-label', label);
    badge.hidden = room.unread === 0;
    badge.classList.toggle('mention', room.mentions > 0);
    badge.textContent = (room.mentions > 0 ? '@' : '') + (room.unread > 99 ? '99+' : String(room.unread));
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

// Each unconfirmed message is shown at the bottom of its room (the
// outbox) until the gateway sequences it; js/sendqueue.js decides when it
// goes and reports its state here.

function pendingLabel(item) {
  switch (item.state) {
    case QUEUED: return conn.connected ? 'Waiting to send…' : 'Waiting for connection…';
    case SENDING: return 'Sending…';
    case UNKNOWN: return 'Checking whether it was delivered…';
    case RETRYING: {
      const secs = Math.ceil((Math.max(item.retryAt, state.hold ? state.hold.until : 0) - Date.now()) / 1000);
      return secs > 0 ? `Sending again in ${secs}s` : 'Sending again…';
    }
    default: return 'Not sent';
  }
}

function enqueue(roomName, text) {
  if (!state.rooms.has(roomName)) return;
  queue.add(roomName, text);
  if (roomName === state.active) scrollToBottom();
}

function renderPending(item) {
  const room = state.rooms.get(item.room);
  if (!room) return;
  if (!item.view) {
    const stateEl = el('span', { class: 'pending-state' });
    const li = el('li', { class: 'msg own pending' },
      el('span', { class: 'pending-gutter', 'aria-hidden': 'true' }),
      el('div', { class: 'text', dir: 'auto' }, richText(item.text, matcherFor(room))),
      el('div', { class: 'pending-foot' }, stateEl));
    item.view = { li, stateEl };
    room.outbox.append(li);
    renderOutboxHeads(room);
  }
  if (item.view.li.dataset.state !== item.state) item.view.li.dataset.state = item.state;
  setText(item.view.stateEl, pendingLabel(item));
}

function removePendingView(item) {
  const room = state.rooms.get(item.room);
  item.view?.li.remove();
  if (room) renderOutboxHeads(room);
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
    if (wantHead) li.prepend(...ownHead());
  }
}

function ownHead() {
  const me = state.me || { id: 'me', name: state.name || 'you' };
  return [avatar(me), el('div', { class: 'msg-head' }, el('span', { class: 'author', dir: 'auto' }, me.name), el('span', { class: 'tag' }, 'you'))];
}

// showFailed: the queue gave up on a message. It moves into the room's
// log where it failed, so that it never sits below messages written after
// it; what was written after it goes on. Sending it again makes a new
// message at the end; a message the gateway refused as such can be taken
// back into the composer to be changed.
function showFailed(item) {
  const room = state.rooms.get(item.room);
  if (!room || !item.view) return;
  const { li, stateEl } = item.view;
  li.remove();
  li.dataset.state = FAILED;
  li.classList.add('failed', 'head');
  li.classList.remove('cont');
  li.querySelector('.avatar')?.remove();
  li.querySelector('.msg-head')?.remove();
  li.prepend(...ownHead());
  stateEl.textContent = 'Not sent';
  const short = item.text.slice(0, 40);
  const again = item.resend
    ? el('button', {
      type: 'button', class: 'btn link small', 'aria-label': `Send “${short}” again`,
      on: { click: () => { li.remove(); enqueue(item.room, item.text); } },
    }, 'Send again')
    : el('button', {
      type: 'button', class: 'btn link small', 'aria-label': `Edit the unsent message “${short}”`,
      on: {
        click: () => {
          li.remove();
          if (state.rooms.has(item.room)) setActive(item.room);
          ui.text.value = ui.text.value.trim() === '' ? item.text : `${ui.text.value}\n${item.text}`;
          autosize();
          renderComposer();
          ui.text.focus();
        },
      },
    }, 'Edit');
  const del = el('button', {
    type: 'button', class: 'btn link small danger', 'aria-label': `Delete the unsent message “${short}”`,
    on: { click: () => li.remove() },
  }, 'Delete');
  stateEl.after(el('span', { class: 'pending-why' }, el('span', { class: 'why' }, item.why), again, del));
  room.log.append(li);
  room.lastGroup = null;
  trim(room);
  renderOutboxHeads(room);
}

// renderHold explains a wait of the send queue: always when the gateway
// refused a message (it goes again by itself), and when the page's own
// pacing holds messages back for a second or more. The words are announced
// once; the ticking seconds are shown but kept out of the announcement.
function renderHold() {
  clearInterval(state.holdTimer);
  state.holdTimer = 0;
  const tick = () => {
    const h = state.hold;
    const left = h ? h.until - Date.now() : 0;
    for (const item of queue.items) if (item.state === RETRYING) renderPending(item);
    if (!h || left <= 0 || (!h.byServer && left < HOLD_BANNER_MS && ui.ratelimit.hidden)) {
      ui.ratelimit.hidden = true;
      return;
    }
    ui.ratelimit.dataset.cause = h.byServer ? 'server' : 'pace';
    setText(ui.ratelimitText, h.byServer
      ? 'The server asked this page to slow down. Your messages keep their order.'
      : 'You’re writing faster than this server allows. Your messages keep their order.');
    const secs = Math.ceil(left / 1000);
    setText(ui.ratelimitCount, h.byServer ? `Sending again in ${secs}s` : `Next one in ${secs}s`);
    ui.ratelimit.hidden = false;
  };
  tick();
  if (state.hold) state.holdTimer = setInterval(tick, 250);
}

function onError(m) {
  const text = friendlyError(m);
  const wait = Number.isFinite(m.retry_after_ms) && m.retry_after_ms > 0 ? m.retry_after_ms : null;
  const ref = typeof m.ref === 'string' ? m.ref : '';
  const sent = ref ? queue.refused(ref, m.code, wait, text) : null;
  if (sent) {
    const room = state.rooms.get(sent.room);
    if (room && (sent.action === 'check' || sent.action === 'rejoin')) {
      // check: a join with since replays what the gateway stored, which
      // settles the message; rejoin: the gateway says we are not in it.
      if (sent.action === 'rejoin') room.inRoom = false;
      room.recheck = sent.action === 'check';
      sendJoin(room);
    }
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
        if (state.rooms.get(roomName) === room && conn.connected && (!room.inRoom || room.recheck)) sendJoin(room);
      }, wait ?? 1000);
      return;
    }
    rejoinDone(roomName, false);
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

// ---------------------------------------------------------- notifications

function renderNotifyToggle() {
  ui.notifyToggle.hidden = !alerts.supported;
  const on = alerts.on;
  ui.notifyToggle.setAttribute('aria-pressed', String(on));
  const what = on ? 'Mention notifications are on' : 'Mention notifications are off';
  ui.notifyToggle.title = `${what}: click to turn them ${on ? 'off' : 'on'}`;
}

async function toggleNotifications() {
  const outcome = await alerts.toggle();
  renderNotifyToggle();
  switch (outcome) {
    case 'on':
      showToast('You’ll get a notification when someone mentions you while this tab is in the background.');
      break;
    case 'blocked':
      showToast('Notifications are blocked for this site. Allow them in your browser’s site settings, then try again.');
      break;
    case 'dismissed':
      showToast('Notifications stay off: the browser did not allow them.');
      break;
    default:
      break;
  }
}

// ------------------------------------------------------------------ toast

// showToast shows a notice made of strings and nodes (user-supplied parts
// come as their own isolated elements). One notice at a time: a newer one
// replaces it.
function showToast(...parts) {
  showNotice({}, parts);
}

function showNotice({ ms = TOAST_MS, kind = '' }, parts) {
  clearTimeout(state.toastTimer);
  ui.toastText.replaceChildren(...parts);
  ui.toast.dataset.kind = kind;
  ui.toast.hidden = false;
  state.toastTimer = setTimeout(() => {
    ui.toast.hidden = true;
  }, ms);
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
  typingSender.reset(room.name);
  enqueue(room.name, text);
}

// start shows the chat as this tab's person: name ('' for a guest name;
// unused with a token), in the tab's rooms plus room.
function start(name, room) {
  if (!state.token) setName(name);
  ui.welcome.hidden = true;
  ui.shell.hidden = false;
  renderMe();
  renderNotifyToggle();
  const rooms = savedRooms();
  const active = room || tabStore.get(KEYS.active);
  for (const r of rooms) addRoom(r, false);
  if (room) addRoom(room, true);
  if (state.rooms.size === 0) addRoom(DEFAULT_ROOM, true);
  if (active && state.rooms.has(active)) setActive(active);
  renderAll();
  syncDrawers();
  conn.start();
  ui.text.focus();
}

// setName records the name this tab chats under; a name typed by the user
// is also the suggestion for the next new tab.
function setName(name) {
  state.name = name;
  tabStore.set(KEYS.name, name);
  if (name) browserStore.set(KEYS.lastName, name);
  tabs.chatAs(name);
}

// showWelcome asks a new tab who it is. The last name typed in this
// browser is suggested only if no open tab chats under it, so that a
// second tab is someone else unless the user says otherwise.
async function showWelcome(room) {
  // Suggestions are the fields' defaults (what a form reset restores).
  const lastRoom = browserStore.get(KEYS.lastRoom);
  ui.welcomeRoom.defaultValue = room || (validRoom(lastRoom) ? lastRoom : DEFAULT_ROOM);
  const last = (browserStore.get(KEYS.lastName) ?? '').trim();
  const inUse = last && nameProblem(last) === '' ? await tabs.namesInUse() : null;
  if (inUse && !inUse.has(nameKey(last))) {
    ui.welcomeName.defaultValue = last;
  } else if (inUse) {
    ui.welcomeNameHelp.replaceChildren('“', el('bdi', null, last),
      '” is chatting in another tab of this browser. Type a name to be someone else here (up to 32 characters), or leave it empty to get a guest name.');
  }
  ui.welcome.hidden = false;
  ui.welcomeName.focus();
  ui.welcomeName.select();
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

async function init() {
  migrate();
  const linked = takeFragmentToken();
  const fromHash = roomFromHash();

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
    typed();
  });

  ui.leaveRoom.addEventListener('click', () => {
    if (state.active) leaveRoom(state.active);
  });
  ui.retryNow.addEventListener('click', () => (conn.state === 'kicked' ? conn.restart() : conn.reconnectNow()));
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
      setName(name);
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
    if (!ui.shell.hidden) renderNotifyToggle(); // the permission may have changed meanwhile
    const room = activeRoom();
    if (!document.hidden && room && room.unread) {
      room.unread = 0;
      room.mentions = 0;
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

  ui.notifyToggle.addEventListener('click', toggleNotifications);
  syncNameFields();

  // A copy of an open tab (the browser's "Duplicate tab" copies its
  // sessionStorage) is a new person: it forgets who the original is, but
  // keeps a token, which names one user in every tab anyway.
  if (!await tabs.claim()) {
    for (const key of [KEYS.name, KEYS.rooms, KEYS.active, KEYS.guest]) tabStore.set(key, null);
  }
  if (linked) tabStore.set(KEYS.token, linked);
  state.token = linked || tabStore.get(KEYS.token) || '';
  if (tokenProblem(state.token) !== '') state.token = '';
  if (!state.token) state.guest = tabStore.get(KEYS.guest) || '';
  if (state.guest && tokenProblem(state.guest) !== '') state.guest = '';
  const tabName = tabStore.get(KEYS.name);
  if (state.token) {
    // Signed in by a link or earlier in this tab: the token names the user.
    state.name = tabName ?? '';
    start('', fromHash);
  } else if (tabName !== null) {
    start(tabName, fromHash); // this tab's person, after a reload
  } else {
    await showWelcome(fromHash);
  }
}

init();
