// Tutela's browser agent (Manifest V3 service worker): the same protocol as
// the native agent (docs/PROTOCOL.md) over gRPC-Web. Enrols with the token in
// the managed configuration, matches pages and typed text with the signed
// rules (a shadow pack only counts), signs each alert with a non-extractable
// Ed25519 key, queues it in IndexedDB and deletes it only when the collector
// acknowledges it; shows the school's monitoring notice; re-keys a copied
// profile. What is wrong goes to the status page and, in heartbeats, to the
// collector's Fleet page.

import { loadEngine, call, toBase64, fromBase64 } from './engine.js';
import { unary, serverStream, Code } from './grpcweb.js';
import { identity, randomId, sha256, sign } from './keys.js';
import { captureTab } from './capture.js';
import { check, managedConfig } from './config.js';
import { machineId, stationName, user } from './device.js';
import * as notice from './notice.js';
import { rekey } from './rekey.js';
import * as store from './store.js';

// `<version> chrome-extension <os>`: the collector's Fleet page names the
// platform from it (`cros`: a Chromebook).
let AGENT_VERSION = `${chrome.runtime.getManifest().version} chrome-extension`;
let PLATFORM = '';
/// Most events queued; beyond it the lowest severity goes first.
const MAX_QUEUE = 1000;
const BATCH_BYTES = 1 << 20;
const BATCH_EVENTS = 64;
/// Repeats of a rule in one tab within this long fold into its first alert
/// (managed `cooldown_secs`, as the native agent's setting).
const DEFAULT_COOLDOWN_MS = 60_000;
const SOURCE_TYPED = 1;
/// Shots of a `burst` rule's capture, and the time between them (as the
/// desktop agent's defaults).
const BURST_SHOTS = 3;
const BURST_INTERVAL_MS = 1000;
/// This run of the extension: shadow counts are cumulative within one run.
const SHADOW_RUN = randomId();

const problems = new Map();
let clockOffsetMs = 0;
let lastHeartbeatMs = 0;
let subscribed = false;
let flushing = null;
let chainLock = Promise.resolve();
let cooldownMs = DEFAULT_COOLDOWN_MS;

// ---- status, for the extension's own page (and the technician) ----

/// Sets (or, with nothing, clears) the problem(s) under `key`.
function problem(key, text) {
  const list = [text ?? []].flat().filter(Boolean);
  if (list.length) problems.set(key, list); else problems.delete(key);
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
      user: await user(enrolment),
      collector: enrolment?.base ?? '',
      fingerprint: enrolment?.fingerprint ?? '',
      rules_version: engine.rules_version ?? 0,
      shadow_version: engine.shadow_version ?? 0,
      exemptions: engine.exemptions ?? 0,
      notice_version: engine.notice_version ?? 0,
      notice_acks_waiting: ((await store.get('notice_acks')) ?? []).length,
      queued: await store.count(),
      last_seq: (await store.get('chain'))?.seq ?? 0,
      repeats_pending: [...(await loadCooldowns()).values()].reduce((n, c) => n + c.repeats, 0),
      set_aside: (await store.get('set_aside')) ?? 0,
      dropped: (await store.get('dropped')) ?? 0,
      rekeyed_from: enrolment?.rekeyed_from ?? '',
      subscribed,
      problems: [...problems.values()].flat(),
      ...extra,
    },
  });
}

function safeCall(op, fields) {
  try { return call(op, fields); } catch { return null; }
}

// ---- configuration and identity ----

/// The configuration in force: its problems reported, the collector
/// address to use (null: none usable).
async function configuration(enrolment) {
  const config = await managedConfig();
  const checked = check(config, enrolment, Date.now());
  problem('config', checked.problems);
  const secs = Number(config.cooldown_secs);
  cooldownMs = Number.isFinite(secs) && secs >= 1 ? Math.min(secs, 3600) * 1000 : DEFAULT_COOLDOWN_MS;
  return { config, ...checked };
}

/// Which of the collector's addresses to use: the one that last answered;
/// one that cannot be reached moves it on to the next (the token's
/// fallbacks), as the desktop agent does.
let preferred = 0;
let addresses = [];

async function collectorBase(enrolment) {
  const { bases } = await configuration(enrolment);
  addresses = bases.length ? bases : [enrolment.base];
  return addresses[preferred % addresses.length];
}

/// After a failed call: the address in use, if it could not be reached,
/// gives way to the next (once, however many calls failed on it).
function failedOver(e) {
  if (e?.unreachable && e.base === addresses[preferred % addresses.length]) preferred += 1;
}

async function ensureEnrolled() {
  const held = await store.get('enrolment');
  const { config, token, bases } = await configuration(held);
  if (held) return held;
  if (!token || !bases.length) return null;
  const id = await identity();
  const station = await stationName(config, id.publicRaw);
  const proof = await sign('tutela-enrol-v1', token.secret);
  const request = call('enrol_request', {
    secret: token.secret,
    public_key: toBase64(id.publicRaw),
    station,
    agent_version: AGENT_VERSION,
    proof: toBase64(proof),
  });
  // The token's address first, then its fallbacks, until one answers.
  let reply;
  let base;
  for (base of bases) {
    try {
      reply = call('enrol_response', {
        bytes: toBase64(await unary(base, 'tutela.v1.Enrolment/Enrol', fromBase64(request.bytes))),
      });
      break;
    } catch (e) {
      problem('enrol', `Enrolment failed: ${e.message}`);
      if (!e.unreachable) return null;
    }
  }
  if (!reply) return null;
  problem('enrol', null);
  const enrolment = {
    agent_id: reply.agent_id,
    group: reply.group,
    bundle_key: reply.bundle_public_key,
    base,
    bases: [base, ...bases.filter((b) => b !== base)],
    fingerprint: token.fingerprint,
    station,
  };
  await store.put('enrolment', enrolment);
  return enrolment;
}

// ---- events: sign, queue, send ----

// Runs `work` alone: sequence numbers and hashes are taken one at a time.
function withChain(work) {
  const next = chainLock.then(work, work);
  chainLock = next.catch(() => {});
  return next;
}

/// A capture of the visible tab, or null (the alert goes without one).
async function capture(windowId) {
  try {
    const shot = await captureTab(windowId);
    problem('capture', null);
    return shot;
  } catch (e) {
    problem('capture', `The visible tab could not be captured (${e.message}); alerts are sent without a picture.`);
    return null;
  }
}

// ---- repeats: folded into the first alert, as the native agent folds ----

/// `${tab}|${rule}` -> { event_id, until_ms, repeats, template, session },
/// kept in IndexedDB so that repeats counted before the browser closed are
/// still reported after it restarts. A typed alert's template is kept
/// without its typed words (the first alert holds them).
let cooldowns = null;

/// This browser session (tab ids are only unique within one).
async function sessionId() {
  let { session_id: id } = await chrome.storage.session.get('session_id');
  if (!id) {
    id = randomId();
    await chrome.storage.session.set({ session_id: id });
  }
  return id;
}

function loadCooldowns() {
  cooldowns ??= (async () => {
    const session = await sessionId();
    const held = new Map(Object.entries((await store.get('cooldowns')) ?? {}));
    // A window from an earlier session ends now: its tab is gone.
    for (const c of held.values()) if (c.session !== session) c.until_ms = 0;
    return held;
  })();
  return cooldowns;
}

async function saveCooldowns() {
  await store.put('cooldowns', Object.fromEntries(await loadCooldowns()));
}

function withoutTypedWords(draft) {
  if (draft.source !== SOURCE_TYPED) return draft;
  return { ...draft, context: '', matches: draft.matches.map((m) => ({ ...m, start: 0, end: 0 })) };
}

/// Cooldowns that ended: each first alert with repeats gets one folded
/// record counting them (the most any of its rules counted).
async function foldEnded() {
  const held = await loadCooldowns();
  const now = Date.now();
  const folds = new Map();
  let ended = 0;
  for (const [key, c] of held) {
    if (c.until_ms > now) continue;
    held.delete(key);
    ended += 1;
    if (!c.repeats) continue;
    const f = folds.get(c.event_id);
    if (f) f.repeats = Math.max(f.repeats, c.repeats); else folds.set(c.event_id, { ...c });
  }
  if (!ended) return;
  await saveCooldowns();
  for (const c of folds.values()) {
    await record({ ...c.template, count: c.repeats, repeat_of: c.event_id, capture: 'none' }, null, now);
  }
  flush();
}

/// `visit`: which visit of a page this observation is (its URL then its
/// title arriving are one visit; a match seen again in the same visit is
/// not a repeat); none for typed text, where every match is one.
async function raise(draft, tab, visit) {
  const enrolment = await store.get('enrolment');
  if (!enrolment) return;
  const now = Date.now();
  const session = await sessionId();
  const held = await loadCooldowns();
  // From here to the windows' update nothing waits: two observations of one
  // tab at once cannot both be first.
  const fresh = [];
  for (const m of draft.matches) {
    const c = held.get(`${tab.id}|${m.rule_id}`);
    if (!c || c.until_ms <= now) {
      fresh.push(m);
    } else if (!visit || c.visit !== visit) {
      c.repeats += 1;
      c.visit = visit;
    }
  }
  if (!fresh.length) {
    await saveCooldowns();
    await publishStatus();
    return;
  }
  const eventId = randomId();
  const first = { ...draft, matches: fresh, severity: Math.max(...fresh.map((m) => m.severity)) };
  const template = withoutTypedWords(first);
  for (const m of fresh) {
    held.set(`${tab.id}|${m.rule_id}`, { event_id: eventId, until_ms: now + cooldownMs, repeats: 0, template, session, visit });
  }
  await saveCooldowns();
  setTimeout(foldEnded, cooldownMs + 100);
  const shot = draft.capture === 'none' ? null : await capture(tab.windowId);
  await record(first, shot, now, eventId);
  flush();
  if (draft.capture === 'burst' && shot) burst(first, eventId, tab);
}

/// The further shots of a burst, each an event adding a capture to the
/// first alert (`count` 0), while the same page stays in front.
async function burst(first, eventId, tab) {
  for (let i = 1; i < BURST_SHOTS; i++) {
    await new Promise((r) => setTimeout(r, BURST_INTERVAL_MS));
    const now = await chrome.tabs.get(tab.id).catch(() => null);
    // The rest of the burst would show something else.
    if (!now?.active || now.url !== tab.url) return;
    const shot = await capture(tab.windowId);
    if (!shot) return;
    await record({ ...first, count: 0, repeat_of: eventId }, shot, Date.now());
    flush();
  }
}

/// Signs `draft` as the next event of the chain and queues it.
async function record(draft, shot, timeMs, eventId = randomId()) {
  const enrolmentNow = await store.get('enrolment');
  if (!enrolmentNow) return;
  const who = await user(enrolmentNow);
  await withChain(async () => {
    const enrolment = await store.get('enrolment');
    const chain = (await store.get('chain')) ?? { seq: 0, prev_hash: toBase64(new Uint8Array(32)) };
    const droppedBefore = (await store.get('dropped_pending')) ?? 0;
    const seq = chain.seq + 1;
    const { body } = call('event_body', {
      event_id: eventId,
      agent_id: enrolment.agent_id,
      seq,
      prev_hash: chain.prev_hash,
      time_ms: timeMs,
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
      count: draft.count ?? 1,
      repeat_of: draft.repeat_of ?? '',
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
    .catch((e) => {
      failedOver(e);
      problem('send', `Alerts are queued on this device and will be sent when the collector can be reached: ${e.message}`);
    })
    .finally(() => {
      flushing = null;
      publishStatus();
      if (flushAgain) flush();
    });
  return flushing;
}

/// This identity is another copy's too: a new identity for this one.
async function renewIdentity(enrolment, reason) {
  return withChain(async () => {
    const current = await store.get('enrolment');
    if (current.agent_id !== enrolment.agent_id) return current; // done meanwhile
    const base = await collectorBase(current);
    try {
      const renewed = await rekey(current, base, { reason, machineId: await machineId(current.station), agentVersion: AGENT_VERSION });
      problem('rekey', null);
      subscribed = false;
      return renewed;
    } catch (e) {
      problem('rekey', `This browser profile's identity is also used by a copy of it elsewhere, and taking a new one failed: ${e.message}`);
      throw e;
    }
  });
}

async function sendQueued() {
  for (;;) {
    const enrolment = await store.get('enrolment');
    if (!enrolment) return;
    const base = await collectorBase(enrolment);
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
    if (reply.refused_code === Code.ALREADY_EXISTS && reply.rejected_seq) {
      // Another copy of this profile already sent this number: re-key, and
      // send what is queued again as the new identity.
      await renewIdentity(enrolment, 'chain-conflict');
    } else if (reply.refused_code) {
      if (!reply.rejected_seq) throw new Error(reply.refused_message || `refused (gRPC status ${reply.refused_code})`);
      // Authentic but refused for good: set aside, go on with the next.
      await store.remove(reply.rejected_seq);
      await store.put('set_aside', ((await store.get('set_aside')) ?? 0) + 1);
    } else if (!reply.ack) {
      throw new Error('the collector acknowledged nothing');
    }
  }
}

// ---- heartbeats, rules and the notice ----

async function heartbeat(enrolment) {
  const base = await collectorBase(enrolment);
  const timeMs = Math.max(Date.now() + clockOffsetMs, lastHeartbeatMs + 1);
  const shadow = call('shadow_report');
  const { body } = call('heartbeat_body', {
    agent_id: enrolment.agent_id,
    time_ms: timeMs,
    agent_version: AGENT_VERSION,
    rules_version: call('status').rules_version,
    spool_backlog: await store.count(),
    spool_dropped: (await store.get('dropped')) ?? 0,
    station: enrolment.station,
    shadow_version: shadow.version,
    shadow_counts: shadow.version ? shadow.counts : {},
    shadow_run: SHADOW_RUN,
    machine_id: await machineId(enrolment.station),
    // The heartbeat's own trouble is not news to the collector.
    problems: [...problems].filter(([k]) => k !== 'heartbeat').flatMap(([, v]) => v),
  });
  const bodyBytes = fromBase64(body);
  const signed = call('signed', { body, signature: toBase64(await sign('tutela-heartbeat-v2', bodyBytes)) });
  let reply;
  try {
    reply = call('heartbeat_reply', { bytes: toBase64(await unary(base, 'tutela.v1.Ingest/Heartbeat', fromBase64(signed.bytes))) });
    lastHeartbeatMs = timeMs;
    problem('heartbeat', null);
  } catch (e) {
    const collectorMs = Number(e.trailers?.['tutela-collector-time-ms']);
    if (e.code === Code.FAILED_PRECONDITION && collectorMs) {
      clockOffsetMs = collectorMs - Date.now();
      problem('heartbeat', 'This device\'s clock is wrong; heartbeats use the collector\'s clock.');
    } else {
      failedOver(e);
      problem('heartbeat', `Heartbeat failed: ${e.message}`);
    }
    return;
  }
  if (reply.rekey) await renewIdentity(enrolment, 'collector-request').catch(() => {});
}

const SAVED = { bundle: 'rules', shadow: 'shadow', exemptions: 'exemptions', notice: 'notice' };

async function applyUpdate(bytes, enrolment, save) {
  const result = call('rules_update', {
    bytes,
    bundle_key: enrolment.bundle_key,
    group: enrolment.group,
    now_ms: Date.now(),
  });
  if (result.applied) {
    problem(`rules-${result.kind}`, null);
    if (save && SAVED[result.kind]) await store.put(SAVED[result.kind], bytes);
    if (result.kind === 'notice') {
      notice.hold(result.notice);
      await notice.showIfDue(await user(enrolment));
    }
  } else {
    problem(`rules-${result.kind}`, `A ${result.kind} update from the collector was refused (${result.reason}); the one in force stays.`);
  }
  return result;
}

async function subscribe(enrolment) {
  if (subscribed) return;
  subscribed = true;
  try {
    const base = await collectorBase(enrolment);
    const status = call('status');
    const { body } = call('subscribe_body', {
      agent_id: enrolment.agent_id,
      current_version: status.rules_version,
      current_shadow_version: status.shadow_version,
      time_ms: Date.now(),
    });
    const signed = call('signed', { body, signature: toBase64(await sign('tutela-subscribe-v2', fromBase64(body))) });
    await publishStatus();
    await serverStream(base, 'tutela.v1.Rules/Subscribe', fromBase64(signed.bytes), async (message) => {
      await applyUpdate(toBase64(message), enrolment, true);
      await publishStatus();
    });
  } catch (e) {
    failedOver(e);
    problem('rules', `The rules stream from the collector ended: ${e.message}`);
  } finally {
    subscribed = false;
    publishStatus();
  }
}

async function sendNoticeAcks(enrolment) {
  problem('notice', await notice.sendAcks(await collectorBase(enrolment)));
}

// ---- sensors ----

const pages = new Map();
/// Tab id -> this visit's id, new whenever the tab goes to another address.
const visits = new Map();

async function observeTab(tab) {
  if (!tab || !tab.active || !/^https?:/.test(tab.url ?? '')) return;
  const seen = pages.get(tab.id);
  if (seen && seen.url === tab.url && seen.title === tab.title) return;
  pages.set(tab.id, { url: tab.url, title: tab.title });
  await ready;
  const draft = call('observe_page', { url: tab.url, title: tab.title ?? '', now_ms: Date.now() });
  if (!visits.has(tab.id)) visits.set(tab.id, randomId());
  if (draft) await raise(draft, tab, visits.get(tab.id));
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

async function noticeAcknowledged(message, sender) {
  await ready;
  const enrolment = await store.get('enrolment');
  if (!enrolment) return;
  if (await notice.acknowledged(message, sender.tab?.id, enrolment, await user(enrolment))) {
    await sendNoticeAcks(enrolment);
    await publishStatus();
  }
}

chrome.tabs.onUpdated.addListener((tabId, change, tab) => {
  if (change.url) {
    visits.set(tabId, randomId());
    safeCall('typed_reset', { tab: tabId });
    ready.then(async () => notice.tabNavigated(tabId, change.url, await user()));
  }
  if (change.url || change.title || change.status === 'complete') observeTab(tab);
});
chrome.tabs.onActivated.addListener(({ tabId }) => {
  chrome.tabs.get(tabId).then(observeTab, () => {});
});
chrome.tabs.onRemoved.addListener((tabId) => {
  pages.delete(tabId);
  visits.delete(tabId);
  safeCall('typed_reset', { tab: tabId });
  ready.then(async () => notice.tabClosed(tabId, await user()));
});
chrome.runtime.onMessage.addListener((message, sender) => {
  if (sender.id !== chrome.runtime.id) return;
  // The notice page, this extension's own.
  if (message?.kind === 'notice-ack' && sender.url?.startsWith(chrome.runtime.getURL('notice.html'))) {
    noticeAcknowledged(message, sender);
    return;
  }
  // Only this extension's own content scripts, from a tab.
  if (!sender.tab || message?.kind !== 'typed') return;
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
    await foldEnded();
    await heartbeat(enrolment);
    const current = await store.get('enrolment');
    subscribe(current);
    await flush();
    await sendNoticeAcks(current);
    await notice.showIfDue(await user(current));
  }
  await publishStatus();
}

async function start() {
  await loadEngine();
  try {
    PLATFORM = (await chrome.runtime.getPlatformInfo()).os;
    AGENT_VERSION += ` ${PLATFORM}`;
  } catch { /* the platform stays unnamed */ }
  const enrolment = await store.get('enrolment');
  // The rules, shadow rules, exemptions and notice last applied, checked
  // again as on arrival (the notice is shown before the collector is reached).
  for (const key of ['rules', 'shadow', 'exemptions', 'notice']) {
    const saved = enrolment && (await store.get(key));
    if (saved) {
      try { await applyUpdate(saved, enrolment, false); } catch (e) { problem(key, e.message); }
    }
  }
  await chrome.alarms.create('tick', { periodInMinutes: 0.5 });
}

const ready = start();
tick();
