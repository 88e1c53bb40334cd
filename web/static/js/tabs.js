// The other tabs of this browser that have the page open, through the Web
// Locks API: a lock is released when its tab closes or crashes, so what the
// locks say is always current. Each tab holds
//
//   chatgate.tab.<id>              for as long as it is open, and
//   chatgate.as.<id>.<name>        while it chats under that name.
//
// The first tells a tab that is a copy of another ("Duplicate tab" copies
// sessionStorage, id included) from a reload of itself; the second tells
// the welcome form of a new tab which names are taken by tabs still open,
// so that it suggests the last name only when no other tab uses it.
//
// Browsers offer Web Locks in secure contexts only (https, and http on
// localhost). Elsewhere the page cannot know about other tabs: it then
// suggests no name, so a new tab is still someone else by default.

import { KEYS, tabStore } from './storage.js';
import { nameKey } from './wire.js';

const TAB_LOCK = 'chatgate.tab.';
const NAME_LOCK = 'chatgate.as.';
// A reload's new document may ask for its tab lock a moment before the old
// document has released it; a copy of a tab that is still open would wait
// for ever.
const CLAIM_WAIT_MS = 1500;

function locks() {
  return typeof navigator !== 'undefined' && navigator.locks && typeof navigator.locks.request === 'function'
    ? navigator.locks : null;
}

function newId() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

export class Tabs {
  constructor() {
    this.id = '';
    this.releaseName = null;
  }

  // claim takes this tab's id (the stored one if this tab had one) and
  // resolves to false if another open tab holds it: this tab is a copy,
  // and got a new id.
  async claim() {
    const stored = tabStore.get(KEYS.tabId);
    const had = stored !== null && /^[0-9a-f]{16}$/.test(stored);
    if (had && await this.hold(stored, CLAIM_WAIT_MS)) {
      this.id = stored;
      return true;
    }
    this.id = newId();
    tabStore.set(KEYS.tabId, this.id);
    await this.hold(this.id, CLAIM_WAIT_MS);
    return !had;
  }

  // hold asks for the tab lock of id and keeps it for the life of the
  // page; false if it was not granted within waitMs.
  hold(id, waitMs) {
    const l = locks();
    if (!l) return Promise.resolve(true);
    return new Promise((resolve) => {
      const stop = new AbortController();
      const timer = setTimeout(() => stop.abort(), waitMs);
      l.request(TAB_LOCK + id, { signal: stop.signal }, () => {
        clearTimeout(timer);
        resolve(true);
        return new Promise(() => {}); // never released while the page lives
      }).catch(() => resolve(false));
    });
  }

  // chatAs records the name this tab chats under ('' for none).
  chatAs(name) {
    if (this.releaseName) this.releaseName();
    this.releaseName = null;
    const l = locks();
    if (!l || !this.id || !name) return;
    let release;
    const held = new Promise((resolve) => {
      release = resolve;
    });
    l.request(`${NAME_LOCK}${this.id}.${encodeURIComponent(name)}`, () => held).catch(() => {});
    this.releaseName = release;
  }

  // namesInUse resolves to the keys (nameKey) of the names other open tabs
  // chat under, or null when the browser cannot tell.
  async namesInUse() {
    const l = locks();
    if (!l || typeof l.query !== 'function') return null;
    let snapshot;
    try {
      snapshot = await l.query();
    } catch {
      return null;
    }
    const names = new Set();
    for (const lock of snapshot.held || []) {
      const n = typeof lock.name === 'string' ? lock.name : '';
      if (!n.startsWith(NAME_LOCK)) continue;
      const rest = n.slice(NAME_LOCK.length);
      const dot = rest.indexOf('.');
      if (dot < 0 || rest.slice(0, dot) === this.id) continue;
      try {
        names.add(nameKey(decodeURIComponent(rest.slice(dot + 1))));
      } catch {
        // not ours
      }
    }
    return names;
  }
}
