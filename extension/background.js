// Tutela's browser agent (Manifest V3 service worker): the same protocol as
// the native agent (docs/PROTOCOL.md) over gRPC-Web. Enrols with the token in
// the managed configuration, matches pages and typed text with the signed
// rules, signs each alert with a non-extractable Ed25519 key, queues it in
// IndexedDB and deletes it only when the collector acknowledges it.

import { loadEngine, call, toBase64, fromBase64 } from './engine.js';
import { unary, serverStream, GrpcError, Code } from './grpcweb.js';
import * as store from './store.js';

// `<version> chrome-extension <os>`: the collector's Fleet page names the
// platform from it (`cros`: a Chromebook).
let AGENT_VERSION = `${chrome.runtime.getManifest().version} chrome-extension`;
/// Most events queued; beyond it the lowest severity goes first.
const MAX_QUEUE = 1000;
const BATCH_BYTES = 1 << 20;
const BATCH_EVENTS = 64;
/// A rule that fired in a tab stays quiet there this long.
const COOLDOWN_MS = 60_000;
const SOURCE_TYPED = 1;

const encoder = new TextEncoder();
const problems = new Map();
const cooldowns = new Map();
let clockOffsetMs = 0;
let lastHeartbeatMs = 0;
let subscribed = false;
let flushing = null;
let chainLock = Promise.resolve();

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// ---- status, for the extension's own page (and the technician) ----

function problem(key, text) {
  if (text) problems.set(key, text); else problems.delete(key);
}

async function publishStatus(extra = {}) {
  const enrolment = await store.get('enrolment');
  const engine = safeCall('status') ?? {};
  await chrome.storage.local.set({
    status: {
      updated_ms: Date.now(),
      enrolled: Boolean(enrolment),
      agent_id: enrolment?.agent_id ?? '',
      station: enrolment?.station ?? '',
      collector: enrolment?.base ?? '',
      fingerprint: enrolment?.fingerprint ?? '',
      rules_version: engine.rules_version ?? 0,
      exemptions: engine.exemptions ?? 0,
      queued: await store.count(),
      set_aside: (await store.get('set_aside')) ?? 0,
      dropped: (await store.get('dropped')) ?? 0,
      subscribed,
      problems: [...problems.values()],
      ...extra,
    },
  });
}

function safeCall(op, fields) {
  try { return call(op, fields); } catch { return null; }
}

// ---- configuration and identity ----

async function managedConfig() {
  let config = {};
  try { config = await chrome.storage.managed.get(null); } catch { /* no policy support */ }
  return config;
}

async function identity() {
  let id = await store.get('identity');
  if (!id) {
    // Non-extractable: the private key never leaves the browser's key store.
    const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
    const publicRaw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
    id = { privateKey: pair.privateKey, publicKey: pair.publicKey, publicRaw };
    await store.put('identity', id);
  }
  return id;
}

async function sign(domain, body) {
  const { privateKey } = await identity();
  return new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, privateKey, concat(encoder.encode(domain), body)));
}

async function collectorBase(enrolment) {
  const config = await managedConfig();
  return (config.collector_url || enrolment.base).replace(/\/+$/, '');
}

async function ensureEnrolled() {
  const held = await store.get('enrolment');
  if (held) return held;
  const config = await managedConfig();
  if (!config.enrolment_token) {
    problem('config', 'No enrolment token in the managed configuration: the school\'s administrator must set enrolment_token in this extension\'s policy (see the admin guide).');
    return null;
  }
  let token;
  try {
    token = call('parse_token', { token: config.enrolment_token, now_ms: Date.now() });
  } catch (e) {
    problem('config', `The enrolment token in the managed configuration is refused: ${e.message}`);
    return null;
  }
  if (config.certificate_sha256 && config.certificate_sha256.toLowerCase() !== token.fingerprint) {
    problem('config', 'The certificate fingerprint in the managed configuration differs from the one in the enrolment token: make them the same (`tutela-collector serve` prints it).');
    return null;
  }
  const base = (config.collector_url || `https://${token.collector}`).replace(/\/+$/, '');
  if (!base.startsWith('https://')) {
    problem('config', `The collector address ${base} is not https://: the extension speaks to the collector only over TLS.`);
    return null;
  }
  problem('config', null);
  const id = await identity();
  const station = config.station || `chrome-${hex(await sha256(id.publicRaw)).slice(0, 8)}`;
  const proof = await sign('tutela-enrol-v1', encoder.encode(token.secret));
  const request = call('enrol_request', {
    secret: token.secret,
    public_key: toBase64(id.publicRaw),
    station,
    agent_version: AGENT_VERSION,
    proof: toBase64(proof),
  });
  let reply;
  try {
    reply = call('enrol_response', {
      bytes: toBase64(await unary(base, 'tutela.v1.Enrolment/Enrol', fromBase64(request.bytes))),
    });
  } catch (e) {
    problem('enrol', `Enrolment failed: ${e.message}`);
    return null;
  }
  problem('enrol', null);
  const enrolment = {
    agent_id: reply.agent_id,
    group: reply.group,
    bundle_key: reply.bundle_public_key,
    base,
    fingerprint: token.fingerprint,
    station,
  };
  await store.put('enrolment', enrolment);
  return enrolment;
}

async function user() {
  try {
    const info = await chrome.identity.getProfileUserInfo({ accountStatus: 'ANY' });
    if (info.email) return info.email;
  } catch { /* not signed in */ }
  return (await managedConfig()).user || '';
}

// ---- events: sign, queue, send ----

// Runs `work` alone: sequence numbers and hashes are taken one at a time.
function withChain(work) {
  const next = chainLock.then(work, work);
  chainLock = next.catch(() => {});
  return next;
}

// The browser allows two captures a second: they are spaced, and one that
// is refused all the same is tried once more.
const CAPTURE_SPACING_MS = 600;
let captureLock = Promise.resolve();

function capture(windowId) {
  const next = captureLock.then(() => captureNow(windowId));
  captureLock = next.then(() => new Promise((r) => setTimeout(r, CAPTURE_SPACING_MS)));
  return next;
}

/// A capture that takes longer is given up: the alert goes without it.
const CAPTURE_TIMEOUT_MS = 5000;

function captureVisible(windowId) {
  return Promise.race([
    chrome.tabs.captureVisibleTab(windowId, { format: 'jpeg', quality: 80 }),
    new Promise((_, reject) => setTimeout(() => reject(new Error('the browser did not answer in time')), CAPTURE_TIMEOUT_MS)),
  ]);
}

async function shoot(windowId) {
  try {
    return await captureVisible(windowId);
  } catch {
    await new Promise((r) => setTimeout(r, CAPTURE_SPACING_MS));
    return captureVisible(windowId);
  }
}

async function captureNow(windowId) {
  try {
    const url = await shoot(windowId);
    const bitmap = await createImageBitmap(await (await fetch(url)).blob());
    let { width, height } = bitmap;
    if (width > 1280) { height = Math.round((height * 1280) / width); width = 1280; }
    const canvas = new OffscreenCanvas(width, height);
    canvas.getContext('2d').drawImage(bitmap, 0, 0, width, height);
    const blob = await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.75 });
    const bytes = new Uint8Array(await blob.arrayBuffer());
    problem('capture', null);
    return { bytes, width, height, sha256: await sha256(bytes) };
  } catch (e) {
    problem('capture', `The visible tab could not be captured (${e.message}); alerts are sent without a picture.`);
    return null;
  }
}

async function raise(draft, tab) {
  const enrolment = await store.get('enrolment');
  if (!enrolment) return;
  const now = Date.now();
  const fresh = draft.matches.filter((m) => (cooldowns.get(`${tab.id}|${m.rule_id}`) ?? 0) <= now);
  if (!fresh.length) return;
  for (const m of draft.matches) cooldowns.set(`${tab.id}|${m.rule_id}`, now + COOLDOWN_MS);
  const shot = draft.capture === 'none' ? null : await capture(tab.windowId);
  const who = await user();
  await withChain(async () => {
    const chain = (await store.get('chain')) ?? { seq: 0, prev_hash: toBase64(new Uint8Array(32)) };
    const droppedBefore = (await store.get('dropped_pending')) ?? 0;
    const seq = chain.seq + 1;
    const { body } = call('event_body', {
      event_id: hex(crypto.getRandomValues(new Uint8Array(16))),
      agent_id: enrolment.agent_id,
      seq,
      prev_hash: chain.prev_hash,
      time_ms: now,
      user: who,
      station: enrolment.station,
      observation: {
        source: draft.source,
        context: draft.context,
        app: 'chrome',
        window_title: draft.window_title,
        url: draft.url,
        search_query: draft.search_query,
      },
      matches: draft.matches,
      capture: shot && { sha256: toBase64(shot.sha256), size: shot.bytes.length, width: shot.width, height: shot.height },
      rules_version: draft.rules_version,
      dropped_before: droppedBefore,
    });
    const bodyBytes = fromBase64(body);
    const signature = await sign('tutela-event-v2', bodyBytes);
    await store.enqueue(
      { seq, severity: draft.severity, body, signature: toBase64(signature), capture: shot ? toBase64(shot.bytes) : '' },
      { seq, prev_hash: toBase64(await sha256(bodyBytes)) },
    );
    if (droppedBefore) await store.put('dropped_pending', 0);
    const dropped = await store.bound(MAX_QUEUE);
    if (dropped) {
      await store.put('dropped_pending', dropped);
      await store.put('dropped', ((await store.get('dropped')) ?? 0) + dropped);
    }
  });
  flush();
}

// Sends the queue; a call while a send runs makes it go round once more,
// so an event queued meanwhile is not left for the next tick.
let flushAgain = false;

function flush() {
  if (flushing) {
    flushAgain = true;
    return flushing;
  }
  flushAgain = false;
  flushing = sendQueued()
    .then(() => problem('send', null))
    .catch((e) => problem('send', `Alerts are queued on this device and will be sent when the collector can be reached: ${e.message}`))
    .finally(() => {
      flushing = null;
      publishStatus();
      if (flushAgain) flush();
    });
  return flushing;
}

async function sendQueued() {
  const enrolment = await store.get('enrolment');
  if (!enrolment) return;
  const base = await collectorBase(enrolment);
  for (;;) {
    const queued = await store.queued(BATCH_EVENTS);
    if (!queued.length) return;
    const batch = [];
    let bytes = 0;
    for (const e of queued) {
      const size = e.body.length + e.capture.length;
      if (batch.length && bytes + size > BATCH_BYTES) break;
      batch.push(e);
      bytes += size;
    }
    const message = call('event_batch', { events: batch.map(({ body, signature, capture: c }) => ({ body, signature, capture: c })) });
    const reply = call('batch_reply', {
      bytes: toBase64(await unary(base, 'tutela.v1.Ingest/Submit', fromBase64(message.bytes))),
    });
    if (reply.ack) {
      if (reply.ack.agent_id !== enrolment.agent_id || !batch.some((e) => e.seq === reply.ack.seq)) {
        throw new Error('the collector acknowledged an event this device did not send');
      }
      await store.acknowledge(reply.ack.seq);
    }
    if (reply.refused_code) {
      if (!reply.rejected_seq) throw new GrpcError(reply.refused_code, reply.refused_message);
      // Authentic but refused for good: set aside, go on with the next.
      await store.remove(reply.rejected_seq);
      await store.put('set_aside', ((await store.get('set_aside')) ?? 0) + 1);
    } else if (!reply.ack) {
      throw new Error('the collector acknowledged nothing');
    }
  }
}

// ---- heartbeats and rules ----

async function heartbeat(enrolment) {
  const base = await collectorBase(enrolment);
  const timeMs = Math.max(Date.now() + clockOffsetMs, lastHeartbeatMs + 1);
  const { body } = call('heartbeat_body', {
    agent_id: enrolment.agent_id,
    time_ms: timeMs,
    agent_version: AGENT_VERSION,
    rules_version: call('status').rules_version,
    spool_backlog: await store.count(),
    spool_dropped: (await store.get('dropped')) ?? 0,
    station: enrolment.station,
  });
  const bodyBytes = fromBase64(body);
  const signed = call('signed', { body, signature: toBase64(await sign('tutela-heartbeat-v2', bodyBytes)) });
  try {
    await unary(base, 'tutela.v1.Ingest/Heartbeat', fromBase64(signed.bytes));
    lastHeartbeatMs = timeMs;
    problem('heartbeat', null);
  } catch (e) {
    const collectorMs = Number(e.trailers?.['tutela-collector-time-ms']);
    if (e.code === Code.FAILED_PRECONDITION && collectorMs) {
      clockOffsetMs = collectorMs - Date.now();
      problem('heartbeat', 'This device\'s clock is wrong; heartbeats use the collector\'s clock.');
    } else {
      problem('heartbeat', `Heartbeat failed: ${e.message}`);
    }
  }
}

async function applyUpdate(bytes, enrolment, save) {
  const result = call('rules_update', {
    bytes,
    bundle_key: enrolment.bundle_key,
    group: enrolment.group,
    now_ms: Date.now(),
  });
  if (result.applied) {
    problem(`rules-${result.kind}`, null);
    if (save) await store.put(result.kind === 'bundle' ? 'rules' : 'exemptions', bytes);
  } else {
    problem(`rules-${result.kind}`, `A ${result.kind} update from the collector was refused (${result.reason}); the rules in force stay.`);
  }
  return result;
}

async function subscribe(enrolment) {
  if (subscribed) return;
  subscribed = true;
  try {
    const base = await collectorBase(enrolment);
    const { body } = call('subscribe_body', {
      agent_id: enrolment.agent_id,
      current_version: call('status').rules_version,
      time_ms: Date.now(),
    });
    const signed = call('signed', { body, signature: toBase64(await sign('tutela-subscribe-v2', fromBase64(body))) });
    await publishStatus();
    await serverStream(base, 'tutela.v1.Rules/Subscribe', fromBase64(signed.bytes), async (message) => {
      await applyUpdate(toBase64(message), enrolment, true);
      await publishStatus();
    });
  } catch (e) {
    problem('rules', `The rules stream from the collector ended: ${e.message}`);
  } finally {
    subscribed = false;
    publishStatus();
  }
}

// ---- sensors ----

const pages = new Map();

async function observeTab(tab) {
  if (!tab || !tab.active || !/^https?:/.test(tab.url ?? '')) return;
  const seen = pages.get(tab.id);
  if (seen && seen.url === tab.url && seen.title === tab.title) return;
  pages.set(tab.id, { url: tab.url, title: tab.title });
  await ready;
  const draft = call('observe_page', { url: tab.url, title: tab.title ?? '', now_ms: Date.now() });
  if (draft) await raise(draft, tab);
}

async function typed(tab, message) {
  await ready;
  if (message.private) {
    call('typed_reset', { tab: tab.id });
    return;
  }
  const draft = call('typed', {
    tab: tab.id,
    text: String(message.text ?? '').slice(0, 4096),
    backspaces: Number(message.backspaces) || 0,
    flush: Boolean(message.flush),
    title: tab.title ?? '',
    url: tab.url ?? '',
    now_ms: Date.now(),
  });
  if (draft && draft.source === SOURCE_TYPED) await raise(draft, tab);
}

chrome.tabs.onUpdated.addListener((tabId, change, tab) => {
  if (change.url) safeCall('typed_reset', { tab: tabId });
  if (change.url || change.title || change.status === 'complete') observeTab(tab);
});
chrome.tabs.onActivated.addListener(({ tabId }) => {
  chrome.tabs.get(tabId).then(observeTab, () => {});
});
chrome.tabs.onRemoved.addListener((tabId) => {
  pages.delete(tabId);
  safeCall('typed_reset', { tab: tabId });
});
chrome.runtime.onMessage.addListener((message, sender) => {
  // Only this extension's own content scripts, from a tab.
  if (sender.id !== chrome.runtime.id || !sender.tab || message?.kind !== 'typed') return;
  typed(sender.tab, message);
});
chrome.alarms.onAlarm.addListener((alarm) => {
  if (alarm.name === 'tick') tick();
});
chrome.storage.onChanged.addListener((_, area) => {
  if (area === 'managed') tick();
});

async function tick() {
  await ready;
  const enrolment = await ensureEnrolled();
  if (enrolment) {
    await heartbeat(enrolment);
    subscribe(enrolment);
    await flush();
  }
  await publishStatus();
}

async function start() {
  await loadEngine();
  try {
    AGENT_VERSION += ` ${(await chrome.runtime.getPlatformInfo()).os}`;
  } catch { /* the platform stays unnamed */ }
  const enrolment = await store.get('enrolment');
  // The rules and exemptions last applied, checked again as on arrival.
  for (const key of ['rules', 'exemptions']) {
    const saved = enrolment && (await store.get(key));
    if (saved) {
      try { await applyUpdate(saved, enrolment, false); } catch (e) { problem(key, e.message); }
    }
  }
  await chrome.alarms.create('tick', { periodInMinutes: 0.5 });
}

const ready = start();
tick();
