// "Alice is typing…". Only with a gateway that announces the "typing"
// feature in welcome.features: the page then sends {"type":"typing",
// "room":…} while the user types (at most one per room every
// TYPING_SEND_MS) and shows who else is typing from the gateway's
// {"type":"typing","room":…,"from":{"id":…,"name":…}} envelopes, each for
// TYPING_SHOW_MS unless that person's message arrives first. Today's
// gateway announces no features, so the page neither sends nor shows any.

export const TYPING_SEND_MS = 3000;
export const TYPING_SHOW_MS = 6000;

// TypingSender decides when the composer's input is worth a typing envelope.
export class TypingSender {
  constructor() {
    this.last = new Map(); // room → when one was sent
  }

  // due reports whether to send one for room now, and if so records it.
  due(room, now) {
    const at = this.last.get(room);
    if (at !== undefined && now - at < TYPING_SEND_MS) return false;
    this.last.set(room, now);
    return true;
  }

  // sent: a message went out, so the next keystroke is news again.
  reset(room) {
    this.last.delete(room);
  }
}

// TypingView keeps who is typing where.
export class TypingView {
  constructor() {
    this.rooms = new Map(); // room → Map(user id → {name, until})
  }

  seen(room, user, now) {
    if (!user || typeof user.id !== 'string' || user.id === '') return;
    let r = this.rooms.get(room);
    if (!r) this.rooms.set(room, (r = new Map()));
    r.set(user.id, { name: user.name, until: now + TYPING_SHOW_MS });
  }

  // stopped: their message arrived (or they left).
  stopped(room, userId) {
    this.rooms.get(room)?.delete(userId);
  }

  forget(room) {
    this.rooms.delete(room);
  }

  // names lists who is typing in room now, oldest first.
  names(room, now) {
    const r = this.rooms.get(room);
    if (!r) return [];
    for (const [id, t] of r) if (t.until <= now) r.delete(id);
    return [...r.values()].map((t) => t.name);
  }

  // nextChange is when the list of room changes by itself (null: never).
  nextChange(room, now) {
    let next = null;
    for (const t of this.rooms.get(room)?.values() ?? []) if (t.until > now && (next === null || t.until < next)) next = t.until;
    return next;
  }
}

// typingParts is what the page shows for names: strings, and {name} for
// each name (which the page isolates in an element of its own).
export function typingParts(names) {
  const n = names.map((name) => ({ name }));
  switch (names.length) {
    case 0: return [];
    case 1: return [n[0], ' is typing…'];
    case 2: return [n[0], ' and ', n[1], ' are typing…'];
    case 3: return [n[0], ', ', n[1], ' and ', n[2], ' are typing…'];
    default: return [n[0], ', ', n[1], ` and ${names.length - 2} others are typing…`];
  }
}
