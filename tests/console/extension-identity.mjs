// Shadow rules, folded repeats and a copied profile in the extension, for
// tests/tests/extension_identity.rs. Talks to the Rust side over stdio as
// extension.mjs does (step names out, a line back); ends with `RESULT
// <json>`; any failed check throws.
//
// Environment: EXTENSION_DIR, PROFILE_DIR (the original profile; its copy
// goes beside it), SPKI.
import fs from 'node:fs';
import http from 'node:http';
import readline from 'node:readline';
import { launch, waitFor } from './extension-browser.mjs';

const extensionDir = process.env.EXTENSION_DIR;
const profileDir = process.env.PROFILE_DIR;
const copyDir = `${profileDir}-copy`;
const result = {};
const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));
lines.once('close', () => process.exit(1));
const step = async (name) => { console.log(name); return nextLine(); };

const PAGES = {
  '/title': '<title>How to make a pipe bomb - Forum</title><p>thread</p>',
  '/shadow': '<title>Make a zip gun at home</title><p>candidate term only</p>',
  '/original': '<title>Pipe bomb thread on the original</title><p>a</p>',
  '/copy': '<title>Pipe bomb thread on the copy</title><p>b</p>',
  '/original-again': '<title>Another pipe bomb thread, original</title><p>a</p>',
  '/copy-again': '<title>Another pipe bomb thread, copy</title><p>b</p>',
  '/burst': '<title>Razor blade tips</title><p>a burst rule</p>',
  '/closing': '<title>Pipe bomb thread before closing</title><p>c</p>',
  '/calm': '<title>Maths</title><p>fractions</p>',
};
const server = http.createServer((req, res) => {
  const page = PAGES[new URL(req.url, 'http://x').pathname] ?? PAGES['/calm'];
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html><body>${page}</body></html>`);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;
const hosts = ['pages.test'];
const url = (path) => `http://pages.test:${port}${path}`;

async function visit(context, path) {
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(url(path));
  await page.bringToFront();
  return page;
}

/// A heartbeat now rather than at the next half-minute tick.
async function heartbeatNow(worker) {
  await worker.evaluate(() => chrome.alarms.create('tick', { when: Date.now() + 50, periodInMinutes: 0.5 }));
}

let { context, worker } = await launch({ extensionDir, profileDir, port, hosts });
const enrolled = await waitFor(worker, 'enrolment and rules', (s) => s.enrolled && s.rules_version === 1);
result.original_id = enrolled.agent_id;
await step('ENROLLED');

// A candidate pack arrives in shadow: its term raises nothing, and the
// heartbeat carries its would-be matches.
await waitFor(worker, 'the shadow pack', (s) => s.shadow_version === 2);
await visit(context, '/shadow');
// The same rule three times in one tab within the folding window: one
// alert, and a folded record counting the two repeats.
const tab = await visit(context, '/title');
for (const path of ['/calm', '/title', '/calm', '/title']) await tab.goto(url(path));
// A burst rule: three captures while the page stays in front.
await visit(context, '/burst');
await new Promise((r) => setTimeout(r, 11000)); // the 10 s folding window ends
await heartbeatNow(worker);
await waitFor(worker, 'the alerts, folded repeats and burst shots to be sent', (s) => s.queued === 0 && s.last_seq >= 5);
await step('SHADOW AND FOLDED');

// Repeats counted just before the browser closes are reported after it
// starts again.
const before = (await waitFor(worker, 'a status', (s) => s.enrolled)).last_seq;
const again = await visit(context, '/closing');
await waitFor(worker, 'the alert before closing', (s) => s.last_seq === before + 1 && s.queued === 0);
await again.goto(url('/calm'));
await again.goto(url('/closing'));
await waitFor(worker, 'the repeat to be counted', (s) => s.repeats_pending === 1);
await context.close();
({ context, worker } = await launch({ extensionDir, profileDir, port, hosts }));
await waitFor(worker, 'the folded repeat after the restart', (s) => s.last_seq === before + 2 && s.queued === 0);
await context.close();

// Two browsers on copies of one profile: one identity, one chain.
fs.cpSync(profileDir, copyDir, { recursive: true });
const original = await launch({ extensionDir, profileDir, port, hosts });
const copy = await launch({ extensionDir, profileDir: copyDir, port, hosts });
const a = await waitFor(original.worker, 'the original to start', (s) => s.enrolled);
const b = await waitFor(copy.worker, 'the copy to start', (s) => s.enrolled);
if (a.agent_id !== result.original_id || b.agent_id !== result.original_id) {
  throw new Error('both copies should start as the original identity');
}
// Visits `path` and waits until the alert it raises is numbered and sent.
async function alertSent(browser, path, what, test = () => true) {
  const before = (await waitFor(browser.worker, 'a status', (s) => s.enrolled)).last_seq;
  await visit(browser.context, path);
  return waitFor(browser.worker, what, (s) => s.queued === 0 && (s.last_seq > before || s.rekeyed_from) && test(s));
}
await alertSent(original, '/original', 'the original\'s alert to be stored');
// The copy numbers its next event as the original already did: refused,
// so it takes a new identity and sends the event again under it.
const renewed = await alertSent(copy, '/copy', 'the copy to re-key and send', (s) => s.rekeyed_from === result.original_id);
result.copy_id = renewed.agent_id;
// Both go on, each as itself.
await alertSent(original, '/original-again', 'the original\'s second alert', (s) => s.agent_id === result.original_id);
await alertSent(copy, '/copy-again', 'the copy\'s second alert', (s) => s.agent_id === result.copy_id && s.last_seq === 2);
await original.context.close();
await copy.context.close();
server.close();
console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(0);
