// The device's identity: an Ed25519 key pair made in WebCrypto,
// non-extractable (the private key never leaves the browser's key store),
// kept in IndexedDB; and the hashing and signing every message needs.
import * as store from './store.js';

const encoder = new TextEncoder();

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

export function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export function randomId() {
  return hex(crypto.getRandomValues(new Uint8Array(16)));
}

export async function newKeyPair() {
  const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
  const publicRaw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  return { privateKey: pair.privateKey, publicKey: pair.publicKey, publicRaw };
}

export async function identity() {
  let id = await store.get('identity');
  if (!id) {
    id = await newKeyPair();
    await store.put('identity', id);
  }
  return id;
}

/// Signs `domain || body` with `key` (the device's own key when absent).
export async function sign(domain, body, key) {
  const privateKey = key ?? (await identity()).privateKey;
  const bytes = typeof body === 'string' ? encoder.encode(body) : body;
  return new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, privateKey, concat(encoder.encode(domain), bytes)));
}
