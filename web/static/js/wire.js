// Wire protocol v1 (docs/protocol.md): parsing server frames, building
// client envelopes, reading close reasons and computing reconnect delays.
// Pure functions only, so the e2e suite can exercise them in the browser.

export const SUBPROTOCOL = 'chatgate.v1';

const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;

// Codes whose close reason may carry retry_ms: drain, overloaded, slow consumer.
const RETRY_HINT_CODES = new Set([1001, 1013, 4008]);
// The client did something wrong: repeating it gets the same result.
export const CLIENT_FAULT_CODES = new Set([1003, 1007, 1008, 1009]);

export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 30_000;
const BACKOFF_FLOOR_MS = 100; // never a tight loop, even when the dice say 0
const HINT_CAP_MS = 5 * 60_000; // distrust a retry_ms beyond this
const HINT_EXTRA_JITTER_MS = 250;

const utf8 = new TextEncoder();

export function validRoom(name) {
  return typeof name === 'string' && ROOM_RE.test(name);
}

export function byteLength(text) {
  return utf8.encode(text).length;
}

// Mirrors the gateway's rule for display names: after trimming, 1–32 code
// points with no control characters. Empty is fine: the gateway then picks
// a guest name. Returns a problem to show, or ''.
export function nameProblem(name) {
  if (name === '') return '';
  if ([...name].length > 32) return 'Names can be at most 32 characters long.';
  if (/[\p{Cc}\uFFFD]/u.test(name)) return 'Names cannot contain control characters.';
  return '';
}

// nameKey is a display name as people compare them: "Alice" and "alice "
// are the same name to a reader (though not to the gateway).
export function nameKey(name) {
  return String(name).trim().normalize('NFC').toLowerCase();
}

// seq values are unsigned 64-bit integers: past 2^53 a JSON number loses
// precision, so the digits are wrapped in a string before parsing and kept
// as a BigInt.
// The pattern only matches a real "seq" key: inside a JSON string every '"'
// is escaped, so '{"seq":' or ',"seq":' cannot occur within one.
const SEQ_FIELD = /([{,])"seq":(\d+)(?=[,}])/g;

// Only numbers that went through SEQ_FIELD count: a seq sent as a string
// (or anything else) is not a seq.
function toSeq(v) {
  const digits = v !== null && typeof v === 'object' ? v.u64 : undefined;
  if (typeof digits !== 'string' || !/^\d{1,20}$/.test(digits)) return null;
  const n = BigInt(digits);
  return n <= 0xffffffffffffffffn ? n : null;
}

// parseFrame splits one WebSocket text message into envelopes (the gateway
// coalesces several, separated by '\n'). Lines that are not JSON objects
// with a string type are skipped; seq becomes a BigInt (or null).
export function parseFrame(data) {
  const out = [];
  if (typeof data !== 'string') return out;
  for (const line of data.split('\n')) {
    if (line.trim() === '') continue;
    let env;
    try {
      env = JSON.parse(line.replace(SEQ_FIELD, '$1"seq":{"u64":"$2"}'));
    } catch {
      continue;
    }
    if (env === null || typeof env !== 'object' || Array.isArray(env) || typeof env.type !== 'string') continue;
    if ('seq' in env) env.seq = toSeq(env.seq);
    out.push(env);
  }
  return out;
}

// since is written as a plain integer, which JSON.stringify cannot do for a
// BigInt, so join envelopes are assembled by hand.
export function joinEnvelope(room, since, ref) {
  let s = `{"type":"join","room":${JSON.stringify(room)}`;
  if (typeof since === 'bigint') s += `,"since":${since.toString()}`;
  if (ref) s += `,"ref":${JSON.stringify(ref)}`;
  return s + '}';
}

export function leaveEnvelope(room, ref) {
  return JSON.stringify(ref ? { type: 'leave', room, ref } : { type: 'leave', room });
}

export function sendEnvelope(room, text, ref) {
  return JSON.stringify({ type: 'send', room, text, ref });
}

// closeInfo reads a close event's JSON reason ({"r":...,"retry_ms":...}).
export function closeInfo(code, reason) {
  let r = '';
  let retryMs = null;
  if (typeof reason === 'string' && reason.startsWith('{')) {
    try {
      const obj = JSON.parse(reason);
      if (obj && typeof obj.r === 'string') r = obj.r;
      if (RETRY_HINT_CODES.has(code) && Number.isFinite(obj.retry_ms) && obj.retry_ms >= 0) {
        retryMs = Math.min(obj.retry_ms, HINT_CAP_MS);
      }
    } catch {
      // not JSON: no hint
    }
  }
  return { code, r, retryMs };
}

// reconnectDelay picks how long to wait before the next attempt. A server
// hint (retry_ms) is honoured as a minimum with a little extra jitter;
// otherwise exponential backoff with full jitter: uniform in
// [0, min(cap, base·2^attempt)], never below a small floor.
export function reconnectDelay(attempt, retryMs, random = Math.random) {
  if (retryMs !== null && retryMs !== undefined) {
    return Math.round(retryMs + random() * HINT_EXTRA_JITTER_MS);
  }
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.max(BACKOFF_FLOOR_MS, Math.round(random() * ceiling));
}

// Browsers cannot set headers on a WebSocket, so a token travels as a
// "bearer.<token>" subprotocol next to chatgate.v1 (docs/security.md); the
// gateway selects chatgate.v1 and never echoes the token. Without a token,
// a guest credential from an earlier welcome (see guestCredential) travels
// the same way as "guest.<credential>", so that a reconnect is the same
// guest; a gateway that issues none is never offered one.
export function subprotocols(token, guest = '') {
  if (token) return [SUBPROTOCOL, `bearer.${token}`];
  if (guest) return [SUBPROTOCOL, `guest.${guest}`];
  return SUBPROTOCOL;
}

// guestCredential reads the resumable guest identity a gateway may issue
// in welcome as {"guest":{"credential":"…"}}: '' when there is none or it
// could not travel as a subprotocol.
export function guestCredential(welcome) {
  const g = welcome && typeof welcome === 'object' ? welcome.guest : null;
  const c = g && typeof g === 'object' ? g.credential : null;
  return typeof c === 'string' && c !== '' && tokenProblem(c) === '' ? c : '';
}

// features reads the optional envelope types a gateway announces in
// welcome.features (e.g. "typing"); today's gateway announces none.
export function features(welcome) {
  const f = welcome && typeof welcome === 'object' ? welcome.features : null;
  return new Set(Array.isArray(f) ? f.filter((x) => typeof x === 'string') : []);
}

// typingEnvelope says "I am typing in room"; only for a gateway that
// announces the "typing" feature (to any other it is an unknown_type).
export function typingEnvelope(room) {
  return JSON.stringify({ type: 'typing', room });
}

// A pasted token: surrounding white space and a "Bearer " prefix dropped.
export function cleanToken(raw) {
  return typeof raw === 'string' ? raw.trim().replace(/^bearer\s+/i, '') : '';
}

// A subprotocol must be an HTTP token (RFC 9110 tchar); a JWT always is.
// Checked before use because new WebSocket throws, quoting the value, on a
// bad one. Returns a problem to show (never the token itself), or ''.
const TOKEN_RE = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
const TOKEN_MAX = 8192; // the gateway allows 16 KiB of headers in all
export function tokenProblem(token) {
  if (token.length > TOKEN_MAX) return 'That token is too long.';
  if (!TOKEN_RE.test(token)) return 'That does not look like a token: it has spaces or characters a token cannot have.';
  return '';
}

// fragmentToken reads a "#token=…" fragment (optionally "#token=…&room=…").
// It returns the token ('' if none) and the fragment that should remain.
export function fragmentToken(hash) {
  const parts = String(hash).replace(/^#/, '').split('&');
  let token = '';
  let room = '';
  let found = false;
  for (const part of parts) {
    const eq = part.indexOf('=');
    const k = eq < 0 ? part : part.slice(0, eq);
    const v = eq < 0 ? '' : part.slice(eq + 1);
    if (k !== 'token' && k !== 'room') continue;
    found = true;
    let value = '';
    try {
      value = decodeURIComponent(v);
    } catch {
      // a malformed escape: ignore the value
    }
    if (k === 'token') token = cleanToken(value);
    else room = value;
  }
  return { found, token, rest: found ? (validRoom(room) ? `#${room}` : '') : String(hash) };
}

export function socketURL(loc, name) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  const q = name ? `?name=${encodeURIComponent(name)}` : '';
  return `${scheme}//${loc.host}/ws${q}`;
}
