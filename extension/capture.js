// Evidence: the visible tab as a JPEG at most 1280 px wide. Throws with the
// browser's reason when it cannot be taken.
import { sha256 } from './keys.js';

// The browser allows two captures a second: they are spaced, and one that
// is refused all the same is tried once more.
const CAPTURE_SPACING_MS = 600;
let captureLock = Promise.resolve();

export function captureTab(windowId) {
  const next = captureLock.then(() => captureNow(windowId));
  captureLock = next.catch(() => {}).then(() => new Promise((r) => setTimeout(r, CAPTURE_SPACING_MS)));
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
  const url = await shoot(windowId);
  const bitmap = await createImageBitmap(await (await fetch(url)).blob());
  let { width, height } = bitmap;
  if (width > 1280) { height = Math.round((height * 1280) / width); width = 1280; }
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext('2d').drawImage(bitmap, 0, 0, width, height);
  const blob = await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.75 });
  const bytes = new Uint8Array(await blob.arrayBuffer());
  return { bytes, width, height, sha256: await sha256(bytes) };
}
