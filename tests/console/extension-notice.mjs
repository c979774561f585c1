// The school's monitoring notice in the extension, for
// tests/tests/extension_notice.rs: the page opens when the notice arrives,
// shows the school's text with its addresses as links and the 'Report a
// concern' link, comes back when closed without acknowledging, and closes
// on 'I understand'; a new version opens it again; so does a new browser
// session (every sign-in), but not for a once-per-version notice already
// acknowledged. Talks to the Rust side over stdio as
// extension.mjs does; any failed check throws.
//
// Environment: EXTENSION_DIR, PROFILE_DIR, SPKI.
import readline from 'node:readline';
import { EXTENSION_ID, launch, waitFor } from './extension-browser.mjs';

const extensionDir = process.env.EXTENSION_DIR;
const profileDir = process.env.PROFILE_DIR;
const NOTICE = `chrome-extension://${EXTENSION_ID}/notice.html`;
const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));
lines.once('close', () => process.exit(1));
const step = async (name) => { console.log(name); return nextLine(); };

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function noticePage(context, version) {
  const end = Date.now() + 60000;
  while (Date.now() < end) {
    for (const page of context.pages()) {
      if (!page.url().startsWith(NOTICE)) continue;
      const text = await page.locator('#text').innerText().catch(() => '');
      if (text.includes(`Version ${version}.`)) return page;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`the notice page for version ${version} did not open`);
}

async function acknowledge(context, worker, page) {
  const closed = page.waitForEvent('close', { timeout: 15000 });
  await page.click('#ack');
  await closed;
  await waitFor(worker, 'the acknowledgement to be sent', (s) => s.notice_acks_waiting === 0);
  check(!context.pages().some((p) => p.url().startsWith(NOTICE)), 'the notice page closes once acknowledged');
}

let { context, worker } = await launch({ extensionDir, profileDir, port: 9, hosts: ['pages.test'] });
await waitFor(worker, 'enrolment and rules', (s) => s.enrolled && s.rules_version === 1);
await step('ENROLLED');

// Version 1 arrives on the rules stream.
let page = await noticePage(context, 1);
const links = await page.locator('#text a').evaluateAll((as) => as.map((a) => a.href));
check(links.includes('https://school.test/aup'), `the address in the text is a link: ${links}`);
const concern = await page.locator('#concern-link').getAttribute('href');
check(concern === 'https://school.test/concern', `the concern link: ${concern}`);
const html = await page.locator('#text').innerHTML();
check(!html.includes('<b>') && html.includes('&lt;b&gt;'), 'markup in the text is shown as written');
// Closing it without acknowledging brings it back; so does leaving it for
// another address.
await page.close();
page = await noticePage(context, 1);
await page.goto('about:blank');
page = await noticePage(context, 1);
await acknowledge(context, worker, page);
await step('ACKED 1');

// Version 2 is shown again.
page = await noticePage(context, 2);
await acknowledge(context, worker, page);
await step('ACKED 2');

// A new browser session shows it at start (every sign-in).
await context.close();
({ context, worker } = await launch({ extensionDir, profileDir, port: 9, hosts: ['pages.test'] }));
page = await noticePage(context, 2);
await acknowledge(context, worker, page);
await step('SESSION');

// Version 3, once per version: shown and acknowledged once, and not again
// in the next session (the first status of the new session comes after
// the notice would have opened).
page = await noticePage(context, 3);
await acknowledge(context, worker, page);
await context.close();
const restarted = Date.now();
({ context, worker } = await launch({ extensionDir, profileDir, port: 9, hosts: ['pages.test'] }));
await waitFor(worker, 'the new session\'s first status', (s) => s.updated_ms > restarted && s.notice_version === 3 && s.enrolled);
check(!context.pages().some((p) => p.url().startsWith(NOTICE)), 'a once-per-version notice already acknowledged is not shown again');
await context.close();
console.log('DONE');
process.exit(0);
