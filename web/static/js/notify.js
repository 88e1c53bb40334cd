// Browser notifications for mentions of the user while the tab is hidden.
// Off by default. The browser's permission is asked for only when the user
// turns them on (a click: browsers ignore or penalise requests without a
// gesture), and the choice is remembered for this browser.

import { KEYS, browserStore } from './storage.js';

const BODY_MAX = 160; // characters of the message in the notification

export class MentionAlerts {
  constructor() {
    this.wanted = browserStore.get(KEYS.notify) === '1';
  }

  // supported: the browser can show notifications for this page (a secure
  // context: https, or http on localhost).
  get supported() {
    return typeof Notification === 'function' && window.isSecureContext === true;
  }

  get permission() {
    return this.supported ? Notification.permission : 'denied';
  }

  // on: the user wants them and the browser allows them.
  get on() {
    return this.wanted && this.permission === 'granted';
  }

  // toggle runs from a click. It resolves to the outcome: 'on', 'off',
  // 'blocked' (the browser refuses: the user has to allow it in the site's
  // settings) or 'dismissed' (the prompt was closed without an answer).
  async toggle() {
    if (this.on) {
      this.setWanted(false);
      return 'off';
    }
    if (!this.supported) return 'blocked';
    let p = Notification.permission;
    if (p === 'default') {
      try {
        p = await Notification.requestPermission();
      } catch {
        p = 'default';
      }
    }
    if (p !== 'granted') {
      this.setWanted(false);
      return p === 'denied' ? 'blocked' : 'dismissed';
    }
    this.setWanted(true);
    return 'on';
  }

  setWanted(on) {
    this.wanted = on;
    browserStore.set(KEYS.notify, on ? '1' : null);
  }

  // show notifies of a mention; onClick brings its room up. One
  // notification per room at a time: a newer one replaces it.
  show({ room, from, text, onClick }) {
    if (!this.on) return;
    const body = [...text].length > BODY_MAX ? `${[...text].slice(0, BODY_MAX - 1).join('')}…` : text;
    let n;
    try {
      n = new Notification(`${from} mentioned you in #${room}`, { body, tag: `chatgate-mention-${room}`, icon: 'favicon.svg' });
    } catch {
      return; // e.g. a browser that only allows them from a service worker
    }
    n.addEventListener('click', () => {
      window.focus();
      onClick();
      n.close();
    });
  }
}
