// One logical connection to the gateway that survives drops: it opens a
// WebSocket, hands every envelope to the app, and on close waits (server
// hint or backoff with full jitter) before opening the next one.

import { CLIENT_FAULT_CODES, closeInfo, parseFrame, reconnectDelay } from './wire.js';

const OPEN_TIMEOUT_MS = 10_000; // socket created → welcome, else start over
const FAULT_MIN_ATTEMPT = 4; // after 1003/1007/1008/1009 back off harder
const STABLE_MS = 10_000; // a socket that lived this long resets the backoff

export class Connection {
  // handlers: url() → string, protocols() → subprotocol(s), onEnvelope(env),
  // onWelcome(env), onClose(info), onStatus({state, retryAt}). onClose may
  // call pause() to stop the reconnecting (e.g. until a fresh token).
  constructor(handlers) {
    this.h = handlers;
    this.ws = null;
    this.ready = false; // welcome received on the current socket
    this.attempt = 0;
    this.running = false;
    this.retryTimer = 0;
    this.openTimer = 0;
    this.retryAt = 0;
    this.readyAt = 0;
    this.everConnected = false;
    this.state = 'offline';
    this.hinted = false; // the current wait is the server's retry_ms
    this.onOnline = () => {
      // Back on the network: skip our own backoff, never a server's hint.
      if (this.running && this.ws === null && !this.hinted) this.reconnectNow();
    };
    this.onOffline = () => {
      if (this.running && this.ws === null) this.setState('offline');
    };
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
  }

  start() {
    this.running = true;
    if (this.ws === null) this.open();
  }

  // restart closes the current socket and opens a new one at once (used
  // when the display name or the token changes: they are handshake
  // parameters). It also ends a pause and the backoff.
  restart() {
    this.running = true;
    this.attempt = 0;
    const wasReady = this.ready;
    this.drop(1000, 'restart');
    if (wasReady) this.h.onClose({ code: 1000, r: 'restart', retryMs: null, wasClean: true, wasReady, byClient: true });
    this.reconnectNow();
  }

  // pause stops reconnecting until restart() or start(); the status shows
  // state meanwhile.
  pause(state) {
    this.running = false;
    clearTimeout(this.retryTimer);
    this.retryAt = 0;
    this.hinted = false;
    this.setState(state);
  }

  reconnectNow() {
    if (!this.running) return;
    clearTimeout(this.retryTimer);
    if (this.ws === null) this.open();
  }

  send(text) {
    if (!this.ready || this.ws === null || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(text);
    return true;
  }

  get connected() {
    return this.ready && this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  setState(state) {
    this.state = state;
    this.h.onStatus({ state, retryAt: this.retryAt });
  }

  // drop forgets the current socket without reporting its close.
  drop(code, reason) {
    clearTimeout(this.openTimer);
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    if (ws !== null) {
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
    }
  }

  open() {
    clearTimeout(this.retryTimer);
    if (navigator.onLine === false) {
      // No network: wait for the 'online' event (or the next backoff step).
      this.schedule(closeInfo(1006, ''));
      return;
    }
    this.retryAt = 0;
    this.setState(this.everConnected || this.attempt > 0 ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new WebSocket(this.h.url(), this.h.protocols());
    } catch (err) {
      // Only the error's name: its message may quote the subprotocols,
      // and so the token.
      console.warn('chatgate: cannot open a WebSocket:', err && err.name);
      this.schedule(closeInfo(1006, ''));
      return;
    }
    this.ws = ws;
    this.ready = false;
    this.openTimer = setTimeout(() => {
      if (this.ws === ws && !this.ready) {
        this.drop(4000, 'timeout');
        this.closed({ ...closeInfo(1006, ''), timedOut: true }, false);
      }
    }, OPEN_TIMEOUT_MS);
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws) return;
      for (const env of parseFrame(ev.data)) {
        if (this.ws !== ws) return; // a handler dropped this socket
        if (env.type === 'welcome') {
          clearTimeout(this.openTimer);
          this.ready = true;
          this.readyAt = Date.now();
          this.everConnected = true;
          this.setState('connected');
          this.h.onWelcome(env);
        } else if (this.ready) {
          this.h.onEnvelope(env);
        }
      }
    });
    ws.addEventListener('close', (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.closed(closeInfo(ev.code, ev.reason), ev.wasClean);
    });
  }

  closed(info, wasClean) {
    clearTimeout(this.openTimer);
    const wasReady = this.ready;
    this.ready = false;
    if (wasReady && Date.now() - this.readyAt >= STABLE_MS) this.attempt = 0;
    info.wasClean = wasClean;
    info.wasReady = wasReady;
    this.h.onClose(info);
    if (this.running) this.schedule(info);
  }

  schedule(info) {
    if (CLIENT_FAULT_CODES.has(info.code)) this.attempt = Math.max(this.attempt, FAULT_MIN_ATTEMPT);
    const delay = reconnectDelay(this.attempt, info.retryMs);
    this.hinted = info.retryMs !== null;
    if (!this.hinted) this.attempt++;
    this.retryAt = Date.now() + delay;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (this.running && this.ws === null) this.open();
    }, delay);
    this.setState(navigator.onLine === false ? 'offline' : 'reconnecting');
  }
}
