// The managed configuration (chrome.storage.managed, pushed by the school's
// admin console or Chrome policy), checked before it is used: every way it
// can be wrong gets a sentence for the technician, shown in the extension's
// own page and, once the device is enrolled, on the collector's Fleet page.
import { call } from './engine.js';

const HEX64 = /^[0-9a-f]{64}$/;

export async function managedConfig() {
  try {
    return await chrome.storage.managed.get(null);
  } catch {
    return {}; // this browser has no policy support
  }
}

/// `https://host[:port]` from `text`, or null when it is not one.
export function collectorAddress(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.protocol !== 'https:' || !url.hostname || url.username || url.password
      || (url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) return null;
  return `https://${url.host}`;
}

/// Checks `config` (for a device enrolled as `enrolment`, or not yet).
/// Returns { problems: [text], token, bases }: `token` the parsed enrolment
/// token when usable, `bases` the collector addresses to use, in order of
/// preference (the token's own, then its fallbacks; empty: none).
export function check(config, enrolment, nowMs) {
  const problems = [];
  let token = null;
  if (!config.enrolment_token) {
    if (!enrolment) {
      problems.push('No enrolment token in the managed configuration: the school\'s administrator must set enrolment_token in this extension\'s policy (see the admin guide).');
    }
  } else {
    try {
      token = call('parse_token', { token: String(config.enrolment_token), now_ms: nowMs });
    } catch (e) {
      problems.push(`The enrolment token in the managed configuration is refused: ${e.message}${enrolment ? ' (this device is enrolled and keeps working; devices not yet enrolled cannot enrol)' : ''}`);
    }
  }
  const pin = String(config.certificate_sha256 ?? '').trim().toLowerCase().replaceAll(':', '');
  if (pin && !HEX64.test(pin)) {
    problems.push('The certificate fingerprint (certificate_sha256) in the managed configuration is not 64 hex digits: copy it as `tutela-collector serve` prints it.');
    token = null; // fail closed: a pin that cannot be checked enrols nothing
  } else if (pin && token && pin !== token.fingerprint) {
    problems.push('The certificate fingerprint (certificate_sha256) in the managed configuration differs from the one in the enrolment token: make them the same (`tutela-collector serve` prints it).');
    token = null;
  } else if (pin && enrolment && pin !== enrolment.fingerprint) {
    problems.push('The certificate fingerprint (certificate_sha256) in the managed configuration differs from the one this device enrolled with: the collector\'s certificate changed, or the policy is for another collector.');
  }
  let bases = enrolment?.bases ?? (enrolment ? [enrolment.base] : []);
  if (!enrolment && token) bases = [token.collector, ...(token.fallbacks ?? [])].map((a) => `https://${a}`);
  if (config.collector_url) {
    const given = collectorAddress(String(config.collector_url));
    if (given) {
      bases = [given];
    } else {
      problems.push(`The collector address (collector_url) in the managed configuration, "${String(config.collector_url).slice(0, 100)}", is not an https://host:port address${enrolment ? '; the address this device enrolled with is used' : ''}.`);
      if (!enrolment) token = null;
    }
  }
  const station = String(config.station ?? '');
  if (station && (station.trim() === '' || station.length > 253 || /[\u0000-\u001f\u007f]/.test(station))) {
    problems.push('The station name in the managed configuration is blank, too long or holds control characters; a name made from the device\'s key is used.');
  }
  return { problems, token, bases };
}
