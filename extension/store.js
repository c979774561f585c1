// IndexedDB: the device's key pair (non-extractable), its enrolment, the
// event chain, the rules last applied, and the durable queue of signed
// events, each deleted only when the collector acknowledges it. Typed text is
// never written here.

const DB = 'tutela';
let db = null;

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

export async function open() {
  if (db) return db;
  const r = indexedDB.open(DB, 1);
  r.onupgradeneeded = () => {
    r.result.createObjectStore('state');
    r.result.createObjectStore('queue', { keyPath: 'seq' });
  };
  db = await request(r);
  return db;
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export async function get(key) {
  return request((await open()).transaction('state').objectStore('state').get(key));
}

export async function put(key, value) {
  const tx = (await open()).transaction('state', 'readwrite');
  tx.objectStore('state').put(value, key);
  await done(tx);
}

// Stores `event` in the queue and the chain position after it, in one
// transaction: an event is either queued with its chain or not at all.
export async function enqueue(event, chain) {
  const tx = (await open()).transaction(['queue', 'state'], 'readwrite');
  tx.objectStore('queue').put(event);
  tx.objectStore('state').put(chain, 'chain');
  await done(tx);
}

export async function queued(limit) {
  const store = (await open()).transaction('queue').objectStore('queue');
  return request(store.getAll(null, limit));
}

export async function count() {
  return request((await open()).transaction('queue').objectStore('queue').count());
}

// Deletes every queued event up to and including `seq`.
export async function acknowledge(seq) {
  const tx = (await open()).transaction('queue', 'readwrite');
  tx.objectStore('queue').delete(IDBKeyRange.upperBound(seq));
  await done(tx);
}

export async function remove(seq) {
  const tx = (await open()).transaction('queue', 'readwrite');
  tx.objectStore('queue').delete(seq);
  await done(tx);
}

// Keeps the queue within `maxEvents`: drops the lowest severity first, and
// among equals the oldest. Returns how many were dropped.
export async function bound(maxEvents) {
  const all = await queued();
  const excess = all.length - maxEvents;
  if (excess <= 0) return 0;
  const victims = all
    .map((e) => ({ seq: e.seq, severity: e.severity }))
    .sort((a, b) => a.severity - b.severity || a.seq - b.seq)
    .slice(0, excess);
  const tx = (await open()).transaction('queue', 'readwrite');
  for (const v of victims) tx.objectStore('queue').delete(v.seq);
  await done(tx);
  return victims.length;
}

// After a re-key: the new key pair, enrolment, chain and the queue moved to
// the new identity, all in one transaction (an event is never left signed
// by one identity and chained for another).
export async function rekeyed(identity, enrolment, events, chain) {
  const tx = (await open()).transaction(['queue', 'state'], 'readwrite');
  const queue = tx.objectStore('queue');
  queue.clear();
  for (const e of events) queue.put(e);
  const state = tx.objectStore('state');
  state.put(identity, 'identity');
  state.put(enrolment, 'enrolment');
  state.put(chain, 'chain');
  await done(tx);
}
