// Chromium with the Tutela extension (or, for a baseline, without it), for
// extension.mjs and extension-typing.mjs. The collector's certificate is
// trusted through the browser's SPKI allow-list (env SPKI), as a school's
// policy would make it trusted; made-up host names map to a page server on
// loopback.
import { chromium } from 'playwright-core';

export const EXTENSION_ID = 'hojnioahjpebjkgiinoedoemfdjifemj';

export async function launch({ extensionDir, profileDir, port, hosts, withExtension = true }) {
  const args = [
    '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
    `--host-resolver-rules=${hosts.map((h) => `MAP ${h} 127.0.0.1:${port}`).join(', ')}`,
  ];
  if (withExtension) {
    args.push(
      `--disable-extensions-except=${extensionDir}`,
      `--load-extension=${extensionDir}`,
      `--ignore-certificate-errors-spki-list=${process.env.SPKI}`,
    );
  }
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 800 },
    args,
  });
  if (!withExtension) return { context, worker: null };
  const ours = (w) => w.url().startsWith(`chrome-extension://${EXTENSION_ID}/`);
  let worker = context.serviceWorkers().find(ours);
  if (!worker) worker = await context.waitForEvent('serviceworker', { predicate: ours, timeout: 20000 });
  return { context, worker };
}

// The extension's status, as its own page shows it ({} while it starts).
export async function status(worker) {
  try {
    return await worker.evaluate(async () => (await chrome.storage.local.get('status')).status ?? {});
  } catch {
    return {};
  }
}

export async function waitFor(worker, what, test, ms = 60000) {
  const end = Date.now() + ms;
  let last = {};
  while (Date.now() < end) {
    last = await status(worker);
    if (test(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}; status: ${JSON.stringify(last)}`);
}
