// The school's monitoring notice (docs/PROTOCOL.md, Monitoring notices): it
// arrives signed on the rules stream, is checked by the engine, and is shown
// in the extension's own page (notice.html), which the pupil must
// acknowledge: closing the tab without acknowledging opens it again. Each
// acknowledgement is signed with the device's key and kept in IndexedDB
// until the collector has it (Notices/Acknowledge).
import { call, toBase64, fromBase64 } from './engine.js';
import { unary, Code } from './grpcweb.js';
import { randomId, sign } from './keys.js';
import * as store from './store.js';

const PAGE = chrome.runtime.getURL('notice.html');
/// Most unsent acknowledgements kept (a device offline for weeks).
const MAX_PENDING = 500;
/// Most (group, version, user) acknowledgements remembered for once-per-version notices.
const MAX_SEEN = 5000;
/// Refusals that resending cannot overcome: the acknowledgement is dropped.
const FOR_GOOD = new Set([Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION, Code.RESOURCE_EXHAUSTED]);

/// The notice held: { group, version, text, once_per_version, concern_url, sha256 }.
let held = null;

export function heldNotice() {
  return held;
}

/// A notice the engine accepted (from the stream, or the saved one at start).
export function hold(notice) {
  held = notice;
}

async function session() {
  return (await chrome.storage.session.get('notice')).notice ?? {};
}

/// Whether `user` must see the held notice now: every sign-in mode, once per
/// browser session and again for each new version; once-per-version mode,
/// once per pupil and version on this device.
async function due(user) {
  if (!held || !held.text.trim()) return false;
  if (held.once_per_version) {
    const seen = (await store.get('notice_seen')) ?? [];
    return !seen.some(([g, v, u]) => g === held.group && v === held.version && u === user);
  }
  return (await session()).acknowledged !== held.version;
}

/// Opens (or brings forward) the notice page when the notice is due.
export async function showIfDue(user) {
  if (!(await due(user))) return false;
  await chrome.storage.session.set({ notice_due: held });
  const { tab } = await session();
  if (tab !== undefined) {
    try {
      // Still the notice (the pupil may have navigated the tab elsewhere).
      const open = await chrome.tabs.get(tab);
      if ((open.pendingUrl ?? open.url ?? '').startsWith(PAGE)) {
        await chrome.tabs.update(tab, { active: true });
        return true;
      }
    } catch { /* closed meanwhile */ }
  }
  const opened = await chrome.tabs.create({ url: PAGE, active: true });
  await chrome.storage.session.set({ notice: { ...(await session()), tab: opened.id } });
  return true;
}

/// The notice tab was closed: without an acknowledgement it comes back.
export async function tabClosed(tabId, user) {
  const state = await session();
  if (state.tab !== tabId) return;
  await chrome.storage.session.set({ notice: { ...state, tab: undefined } });
  await showIfDue(user);
}

/// The notice tab went to another address: the notice opens again.
export async function tabNavigated(tabId, url, user) {
  if (url.startsWith(PAGE)) return;
  await tabClosed(tabId, user);
}

/// The pupil pressed 'I understand' on the page for `shown` ({version,
/// sha256}): signs and queues the acknowledgement and closes the page.
export async function acknowledged(shown, tab, enrolment, user) {
  if (!held || shown?.version !== held.version || shown?.sha256 !== held.sha256) return false;
  const { body } = call('notice_ack_body', {
    agent_id: enrolment.agent_id,
    ack_id: randomId(),
    user,
    station: enrolment.station,
    group: held.group,
    version: held.version,
    time_ms: Date.now(),
    notice_sha256: held.sha256,
  });
  const signature = await sign('tutela-notice-ack-v1', fromBase64(body));
  const pending = (await store.get('notice_acks')) ?? [];
  pending.push({ body, signature: toBase64(signature) });
  await store.put('notice_acks', pending.slice(-MAX_PENDING));
  const seen = ((await store.get('notice_seen')) ?? [])
    .filter(([g, v, u]) => !(g === held.group && u === user && v <= held.version));
  seen.push([held.group, held.version, user]);
  await store.put('notice_seen', seen.slice(-MAX_SEEN));
  await chrome.storage.session.set({ notice: { acknowledged: held.version }, notice_due: null });
  if (tab !== undefined) await chrome.tabs.remove(tab).catch(() => {});
  return true;
}

/// Sends the queued acknowledgements; returns a problem for the status
/// page, or null when none is left.
export async function sendAcks(base) {
  for (;;) {
    const pending = (await store.get('notice_acks')) ?? [];
    if (!pending.length) return null;
    const [first] = pending;
    const message = call('signed', first);
    try {
      await unary(base, 'tutela.v1.Notices/Acknowledge', fromBase64(message.bytes));
    } catch (e) {
      if (!FOR_GOOD.has(e.code)) return `Acknowledgements of the monitoring notice are waiting to be sent: ${e.message}`;
    }
    const left = ((await store.get('notice_acks')) ?? []).filter((a) => a.body !== first.body);
    await store.put('notice_acks', left);
  }
}
