// Drives Chromium with the Tutela extension loaded against a real collector
// for tests/tests/extension.rs. Talks to the Rust test over stdio: prints a
// step name when the browser part of a step is done and waits for a line
// back (the Rust side checks the collector, or stops and starts it); ends
// with one `RESULT <json>` line. Any failed check throws.
//
// Environment: EXTENSION_DIR, PROFILE_DIR (the browser profile, kept across
// a restart), CONSOLE_URL and PASSWORD (a technician's), COLLECTOR_URL, SPKI (base64 SHA-256 of the collector's public key, which the
// browser is told to trust, as a school's policy would), CHROMIUM.
import http from 'node:http';
import https from 'node:https';
import { EXTENSION_ID, launch, waitFor } from './extension-browser.mjs';
import readline from 'node:readline';

const extensionDir = process.env.EXTENSION_DIR;
const profileDir = process.env.PROFILE_DIR;
const result = {};
const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));
// The Rust side is gone (it failed): stop, and close the browser with us.
lines.once('close', () => process.exit(1));
const step = async (name) => { console.log(name); return nextLine(); };

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  result[what] = true;
}

// Pages the pupil visits, served on loopback under made-up names.
const PAGES = {
  '/title': '<title>How to make a pipe bomb - Forum</title><p>thread</p>',
  '/': '<title>Shop</title><p>catalogue</p>',
  '/search': '<title>Search</title><p>results</p>',
  '/write': '<title>Homework</title><textarea id="essay" rows="5" cols="60"></textarea>'
    + '<div id="notes" contenteditable="true" style="min-height:3em;border:1px solid #999"></div>',
  '/signin': '<title>Sign in</title><form><input id="user" name="user">'
    + '<input id="pass" type="password" name="pass"></form>',
  '/exempt': '<title>Cannabis and the law - PSHE</title><p>lesson</p>',
  '/newterm': '<title>Make a zip gun at home</title><p>thread</p>',
  '/later': '<title>Another pipe bomb thread</title><p>offline</p>',
  '/calm': '<title>Maths</title><p>fractions</p>',
};
const server = http.createServer((req, res) => {
  const page = PAGES[new URL(req.url, 'http://x').pathname] ?? PAGES['/calm'];
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html><body>${page}</body></html>`);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;
const hosts = ['pages.test', 'shop.weapons.test', 'www.google.com'];

async function visit(context, url) {
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(url);
  await page.bringToFront();
  return page;
}

let { context, worker } = await launch({ extensionDir, profileDir, port, hosts });
const enrolled = await waitFor(worker, 'enrolment and rules', (s) => s.enrolled && s.rules_version === 1);
check(enrolled.station === 'chromebook-7', 'the station name comes from the managed configuration');
result.agent_id = enrolled.agent_id;
await step('ENROLLED');
await waitFor(worker, 'version 2 and the exemption', (s) => s.rules_version === 2 && s.exemptions === 1);

// A web page cannot call the collector: its origin gets no CORS permission
// (the extension's does), so the browser refuses the page's request.
const page = await visit(context, `http://pages.test:${port}/calm`);
const outcome = await page.evaluate(async (url) => {
  try {
    await fetch(`${url}/tutela.v1.Ingest/Heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' },
      body: new Uint8Array(5),
    });
    return 'answered';
  } catch {
    return 'refused';
  }
}, process.env.COLLECTOR_URL);
check(outcome === 'refused', 'a web page cannot call the collector');
const preflight = (origin) => new Promise((resolve, reject) => {
  const req = https.request(`${process.env.COLLECTOR_URL}/tutela.v1.Ingest/Heartbeat`, {
    method: 'OPTIONS',
    rejectUnauthorized: false,
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type,x-grpc-web',
    },
  }, (res) => { res.resume(); resolve(res.headers['access-control-allow-origin'] ?? null); });
  req.on('error', reject);
  req.end();
});
check(await preflight(`http://pages.test:${port}`) === null, 'no CORS permission for a web page');
check(await preflight(`chrome-extension://${EXTENSION_ID}`) === `chrome-extension://${EXTENSION_ID}`,
  'CORS permission for the extension');

// Sign-in page first: anything it wrongly raised would be stored before the
// alerts after it (events are numbered and stored in order).
const signin = await visit(context, `http://pages.test:${port}/signin`);
await signin.click('#pass');
await signin.keyboard.type('pipe bomb hurt myself ', { delay: 5 });
await signin.click('#user');
await signin.keyboard.type('pipe bomb ', { delay: 5 });
await signin.waitForTimeout(1600);
await visit(context, `http://pages.test:${port}/exempt`);
await visit(context, `http://pages.test:${port}/title`);
await visit(context, `http://pages.test:${port}/newterm`);
await visit(context, `http://shop.weapons.test:${port}/`);
await visit(context, `http://www.google.com:${port}/search?q=how+to+hurt+myself`);
const write = await visit(context, `http://pages.test:${port}/write`);
await write.click('#essay');
await write.keyboard.type('some days I want to hurt myself ', { delay: 5 });
// The page sends typed text after a 1.5 s pause: the text area's words are
// matched (and alerted) before the content-editable's, not in the same piece
// (one piece with two matches makes one alert that lists both).
await write.waitForTimeout(1600);
await write.click('#notes');
await write.keyboard.type('he has a pipe bomb ', { delay: 5 });

await step('PAGES');

// The collector is down now: an alert waits in the queue.
await visit(context, `http://pages.test:${port}/later`);
await waitFor(worker, 'the alert to be queued', (s) => s.queued >= 1);
await context.close();
({ context, worker } = await launch({ extensionDir, profileDir, port, hosts }));
const resumed = await waitFor(worker, 'the restarted browser to report its queue', (s) => s.queued >= 1 && s.enrolled);
check(resumed.agent_id === result.agent_id, 'the restarted browser keeps its identity');
await step('RESTARTED');
await waitFor(worker, 'the queue to empty once the collector is back', (s) => s.queued === 0, 90000);
check(true, 'the queue is sent once the collector returns');

// A technician sees the station, and its platform, on the Fleet page.
const console_ = await context.newPage();
console_.setDefaultTimeout(15000);
await console_.goto(`${process.env.CONSOLE_URL}/login`);
await console_.fill('input[name=name]', 'tech.one');
await console_.fill('input[name=password]', process.env.PASSWORD);
await Promise.all([console_.waitForLoadState('load'), console_.click('button[type=submit]')]);
await console_.goto(`${process.env.CONSOLE_URL}/fleet`);
const row = console_.locator('#fleet tbody tr', { hasText: 'chromebook-7' });
result.fleet_platform = (await row.locator('td').nth(1).textContent()).trim();
await context.close();
server.close();
console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(0);
