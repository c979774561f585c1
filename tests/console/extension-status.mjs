// Starts Chromium with the Tutela extension on a profile, waits until the
// extension's status shows what the test expects, and prints it with the
// text of the extension's own status page: `RESULT <json>`. For
// tests/tests/extension_config.rs (one managed configuration per run).
//
// Environment: EXTENSION_DIR, PROFILE_DIR, SPKI (see extension-browser.mjs),
// EXPECT (a problem's words the status must show; empty: no problem), ENROLLED (`1`: wait until
// enrolled too, `0`: check it is not).
import { EXTENSION_ID, launch, waitFor } from './extension-browser.mjs';

const expect = process.env.EXPECT ?? '';
const enrolled = process.env.ENROLLED === '1';
const { context, worker } = await launch({
  extensionDir: process.env.EXTENSION_DIR,
  profileDir: process.env.PROFILE_DIR,
  port: 9,
  hosts: ['pages.test'],
});
const shows = (s) => (expect ? (s.problems ?? []).some((p) => p.includes(expect)) : s.problems?.length === 0);
const status = await waitFor(worker, `a status showing "${expect}"`, (s) => shows(s)
  && s.enrolled === enrolled && (!enrolled || s.rules_version >= 1));
const page = await context.newPage();
await page.goto(`chrome-extension://${EXTENSION_ID}/status.html`);
await page.waitForSelector(expect ? '#state .problem' : '#state .ok');
const pageText = await page.locator('#state').innerText();
await context.close();
console.log(`RESULT ${JSON.stringify({ status, page_text: pageText })}`);
process.exit(0);
