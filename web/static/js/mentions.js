// @name mentions. A mention is "@" followed by a display name the page
// knows (a member of the room, someone who wrote there, or the user), in
// any letter case, not glued to a letter or digit on either side (so
// "bob@example.com" mentions no one). When names overlap the longest wins:
// "@Alice Chen" is Alice Chen, not Alice. Names may hold spaces and any
// punctuation: they are matched literally.

import { nameKey } from './wire.js';

const WORD = '[\\p{L}\\p{N}\\p{M}_]';

// escapeRe escapes what the "u" flag allows escaped (it refuses "\-").
function escapeRe(s) {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

// mentionMatcher returns find(text) → [{start, end, me}] for the names, me
// being the user's own name (a mention of it has me set).
export function mentionMatcher(names, me) {
  const list = new Map(); // key → name
  for (const n of [...names, me]) {
    if (typeof n === 'string' && n.trim() !== '') list.set(nameKey(n), n.trim());
  }
  if (list.size === 0) return () => [];
  const alternatives = [...list.values()].sort((a, b) => b.length - a.length).map(escapeRe);
  const re = new RegExp(`(?<!${WORD})@(${alternatives.join('|')})(?!${WORD})`, 'giu');
  const meKey = typeof me === 'string' ? nameKey(me) : '';
  return (text) => {
    if (typeof text !== 'string' || !text.includes('@')) return [];
    const out = [];
    for (const m of text.matchAll(re)) {
      out.push({ start: m.index, end: m.index + m[0].length, me: meKey !== '' && nameKey(m[1]) === meKey });
    }
    return out;
  };
}
