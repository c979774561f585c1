// Who and where: the pupil's account and the device's name and machine id,
// from the browser and, on a managed Chromebook, the device's attributes.
import { managedConfig } from './config.js';
import { hex, sha256 } from './keys.js';
import * as store from './store.js';

/// The ChromeOS device's asset id and directory id, on a managed ChromeOS
/// device only (the API exists nowhere else, and there only for
/// force-installed extensions).
async function deviceAttributes() {
  const api = chrome.enterprise?.deviceAttributes;
  if (!api) return {};
  const ask = (f) => new Promise((resolve) => {
    try { api[f]((v) => resolve(chrome.runtime.lastError ? '' : (v ?? ''))); } catch { resolve(''); }
  });
  return { asset: await ask('getDeviceAssetId'), directory: await ask('getDirectoryDeviceId') };
}

/// `machine_id` as docs/PROTOCOL.md defines it, from the ChromeOS device id
/// (so a copied identity on another Chromebook is caught by the collector);
/// empty elsewhere, where a browser knows no machine id.
export async function machineId(station) {
  const { directory } = await deviceAttributes();
  if (!directory) return '';
  return hex(await sha256(new TextEncoder().encode(`tutela-host-v1\n${directory}\n${station}`)));
}

/// The pupil: the Google account signed in to the browser (on a Chromebook,
/// the pupil's sign-in); without one, the managed `user`; without that,
/// `no-account/<station>`.
export async function user(enrolment) {
  try {
    const info = await chrome.identity.getProfileUserInfo({ accountStatus: 'ANY' });
    if (info.email) return info.email;
  } catch { /* no identity API */ }
  const config = await managedConfig();
  if (config.user) return String(config.user);
  return `no-account/${enrolment?.station ?? (await store.get('enrolment'))?.station ?? 'unenrolled'}`;
}

/// The station name: the policy's, else (managed ChromeOS) the device's
/// asset id, else one made from the device key, stable for the profile.
export async function stationName(config, publicRaw) {
  const given = String(config.station ?? '');
  if (given.trim() && given.length <= 253 && !/[\u0000-\u001f\u007f]/.test(given)) return given;
  const { asset } = await deviceAttributes();
  if (asset) return asset;
  return `chrome-${hex(await sha256(publicRaw)).slice(0, 8)}`;
}
