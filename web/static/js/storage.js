// What the page remembers, and where.
//
// Each tab is a person of its own: who it is (its name, its rooms, an
// access token, a guest credential) lives in sessionStorage, which a tab
// keeps across reloads and shares with no other tab. localStorage, which
// every tab of the browser shares, holds only suggestions for the next
// welcome form (the last name and room) and preferences. The access token
// and the guest credential are never written to localStorage.

export const KEYS = {
  // this tab (sessionStorage)
  tabId: 'chatgate.tab.id',
  name: 'chatgate.tab.name', // the name this tab chats under ('' for a guest name)
  rooms: 'chatgate.tab.rooms',
  active: 'chatgate.tab.active',
  token: 'chatgate.token',
  guest: 'chatgate.guest', // a guest credential from welcome (a gateway that issues one)
  // every tab (localStorage)
  lastName: 'chatgate.lastName',
  lastRoom: 'chatgate.lastRoom',
  notify: 'chatgate.notify', // '1': notify of mentions while the tab is hidden
};

// Keys of earlier versions, which kept the name and rooms in localStorage
// and so made every tab the same person.
const OLD_LOCAL = { name: 'chatgate.name', rooms: 'chatgate.rooms', active: 'chatgate.active' };

function area(name) {
  try {
    return window[name]; // a getter that throws when storage is disabled
  } catch {
    return null;
  }
}

function wrap(name) {
  return {
    get(key) {
      try {
        return area(name)?.getItem(key) ?? null;
      } catch {
        return null;
      }
    },
    set(key, value) {
      try {
        const s = area(name);
        if (!s) return;
        if (value === null || value === undefined) s.removeItem(key);
        else s.setItem(key, value);
      } catch {
        // full or disabled: not remembered, not fatal
      }
    },
  };
}

export const tabStore = wrap('sessionStorage');
export const browserStore = wrap('localStorage');

// migrate turns what an earlier version remembered for every tab into
// suggestions.
export function migrate() {
  const name = browserStore.get(OLD_LOCAL.name);
  const active = browserStore.get(OLD_LOCAL.active);
  if (name !== null && browserStore.get(KEYS.lastName) === null) browserStore.set(KEYS.lastName, name);
  if (active !== null && browserStore.get(KEYS.lastRoom) === null) browserStore.set(KEYS.lastRoom, active);
  for (const key of Object.values(OLD_LOCAL)) browserStore.set(key, null);
}
