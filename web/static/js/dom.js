// DOM helpers. Every piece of text reaches the page through textContent or
// text nodes; nothing here (or anywhere in the app) parses HTML.
//
// Every user-supplied string (a display name, a message text, a room name)
// is shown in an element of its own that is bidi-isolated: a <bdi>, or an
// element with dir="auto" (which the browser isolates too, and whose
// direction comes from the string's own first strong character). Bidi
// controls inside such a string (U+202E RIGHT-TO-LEFT OVERRIDE, say) then
// reorder nothing outside it.

export const $ = (id) => document.getElementById(id);

// el('li', {class: 'msg', dataset: {seq: '4'}, attrs: {...}}, child, 'text', ...)
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k === 'on') for (const [type, fn] of Object.entries(v)) node.addEventListener(type, fn);
      else if (k === 'hidden') node.hidden = true;
      else node.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return node;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
const dayYearFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });

export function validDate(ms) {
  if (!Number.isFinite(ms)) return null;
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function timeEl(ms, className = 'ts') {
  const d = validDate(ms);
  const node = el('time', { class: className });
  if (d) {
    node.dateTime = d.toISOString();
    node.textContent = timeFmt.format(d);
    node.title = fullFmt.format(d);
  }
  return node;
}

export function dayKey(ms) {
  const d = validDate(ms);
  return d ? d.toDateString() : '';
}

export function dayLabel(ms) {
  const d = validDate(ms);
  if (!d) return '';
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return 'Today';
  const y = new Date(now);
  y.setDate(now.getDate() - 1);
  if (d.toDateString() === y.toDateString()) return 'Yesterday';
  return (d.getFullYear() === now.getFullYear() ? dayFmt : dayYearFmt).format(d);
}

// A stable small number from a user id (FNV-1a), to pick an avatar colour.
export const AVATAR_COLOURS = 12;
export function hue(id) {
  let h = 0x811c9dc5;
  for (const ch of String(id)) h = Math.imul(h ^ ch.codePointAt(0), 0x01000193) >>> 0;
  return h % AVATAR_COLOURS;
}

export function initials(name) {
  const words = String(name).trim().split(/[\s._-]+/u).filter(Boolean);
  const first = (w) => [...w][0] || '';
  let s = words.length > 1 ? first(words[0]) + first(words[1]) : [...(words[0] || '?')].slice(0, 2).join('');
  s = s.toUpperCase();
  return s || '?';
}

export function avatar(user, size = '') {
  return el('span', { class: `avatar av-${hue(user.id)}${size ? ' ' + size : ''}`, 'aria-hidden': 'true', dir: 'auto' }, initials(user.name));
}

// Plain text with http(s) links made clickable and, when marks is given,
// spans of the rest marked: marks(text) → [{start, end, me}] (@mentions,
// see mentions.js) become <span class="mention"> (plus "me" for the
// user's own name). Only absolute http and https URLs become links;
// everything else stays text.
const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/giu;
const TRAILING_PUNCT = /[.,;:!?)\]}'"]+$/u;

export function richText(text, marks = null) {
  const frag = document.createDocumentFragment();
  const plain = (s) => {
    let last = 0;
    for (const m of marks ? marks(s) : []) {
      frag.append(document.createTextNode(s.slice(last, m.start)));
      frag.append(el('span', { class: m.me ? 'mention me' : 'mention' }, s.slice(m.start, m.end)));
      last = m.end;
    }
    frag.append(document.createTextNode(s.slice(last)));
  };
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    let raw = m[0];
    const trail = raw.match(TRAILING_PUNCT);
    if (trail) raw = raw.slice(0, -trail[0].length);
    let href = '';
    try {
      const u = new URL(raw);
      if (u.protocol === 'http:' || u.protocol === 'https:') href = u.href;
    } catch {
      // not a URL after all
    }
    if (!href) continue;
    plain(text.slice(last, m.index));
    frag.append(el('a', { href, rel: 'noopener noreferrer nofollow', target: '_blank' }, raw));
    last = m.index + raw.length;
  }
  plain(text.slice(last));
  return frag;
}
