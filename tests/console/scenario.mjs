// Drives the review console in headless Chromium through the DSL's path and
// the checks around it. Talks to the Rust test over stdio: prints
// `SEED_MORE` when it wants a new alert stored and waits for a line back;
// ends with one `RESULT <json>` line. Any failed check throws.
//
// Environment: CONSOLE_URL, PASSWORD, SEVERE_ID (the seeded severity-5
// alert), SHOTS_DIR (where the README screenshots go), CHROMIUM.
import { chromium } from 'playwright-core';
import readline from 'node:readline';
import { audit } from './a11y.mjs';

const base = process.env.CONSOLE_URL;
const password = process.env.PASSWORD;
const severeId = process.env.SEVERE_ID;
const shots = process.env.SHOTS_DIR;
const result = {};
const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

// Accessibility (WCAG 2.2 AA, axe-core) of every page each role reaches.
const violations = [];
async function accessible(page, path, label) {
  if (path) await page.goto(`${base}${path}`);
  violations.push(...(await audit(page, label)));
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  result[what] = true;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

async function signIn(name, pass = password) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(`${base}/login`);
  await page.fill('input[name=name]', name);
  await page.fill('input[name=password]', pass);
  await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
  return { context, page };
}

try {
  {
    const context = await browser.newContext();
    const page = await context.newPage();
    await accessible(page, '/login', 'sign-in');
    await accessible(page, '/concern', 'report a concern');
    await context.close();
  }
  // The DSL signs in and sees the seeded severity-5 alert at the top.
  const { context, page } = await signIn('dsl1');
  check(new URL(page.url()).pathname === '/queue', 'dsl lands on the queue');
  const first = page.locator('#queue-rows tr').first();
  check(await first.getAttribute('data-id') === severeId, 'severe alert is first in the queue');
  check(!(await page.content()).includes('mr.smith'), 'dsl does not see staff alerts');

  // A new alert appears without a reload.
  const before = await page.locator('#queue-rows tr').count();
  console.log('SEED_MORE');
  const newId = (await nextLine()).trim();
  await page.waitForSelector(`#queue-rows tr[data-id="${newId}"].fresh`, { timeout: 20000 });
  check(await page.locator('#queue-rows tr').count() === before + 1, 'new alert appears without a reload');
  await page.screenshot({ path: `${shots}/console-queue.png` });
  await accessible(page, null, 'dsl queue');

  // Open the alert: signature verified, matched words marked, capture blurred.
  await Promise.all([page.waitForURL(`**/alerts/${severeId}`), page.locator(`#queue-rows tr[data-id="${severeId}"] a.open`).click()]);
  check((await page.textContent('#signature')).includes('Signature verified'), 'signature verified mark');
  check(await page.locator('#context mark').count() > 0, 'matched words highlighted');
  check(await page.locator('#capture-blurred').isVisible(), 'capture blurred before reveal');
  const early = await page.request.get(`${base}/alerts/${severeId}/capture.jpg`);
  check(early.status() === 403, 'capture refused before reveal');
  await page.screenshot({ path: `${shots}/console-alert.png`, fullPage: true });
  await accessible(page, null, 'dsl alert');

  // Reveal with a reason.
  await page.fill('#reveal-form textarea[name=reason]', 'Checking the screen for risk of harm');
  await Promise.all([page.waitForLoadState('load'), page.click('#reveal-form button[type=submit]')]);
  await page.waitForFunction(() => {
    const img = document.querySelector('#capture');
    return img && img.complete && img.naturalWidth > 0;
  });
  check(true, 'capture revealed with a reason');

  // A note.
  await page.fill('#note-form textarea[name=text]', 'Spoke to form tutor; pupil is safe at home.');
  await Promise.all([page.waitForLoadState('load'), page.click('#note-form button[type=submit]')]);
  check((await page.textContent('#notes')).includes('Spoke to form tutor'), 'note added');

  // Forged posts: no CSRF token, and a wrong one.
  const forged = await page.request.post(`${base}/alerts/${severeId}/note`, { form: { text: 'forged note' } });
  check(forged.status() === 403, 'post without csrf token refused');
  const wrong = await page.request.post(`${base}/alerts/${severeId}/state`, { form: { to: 'closed', csrf: 'x'.repeat(43) } });
  check(wrong.status() === 403, 'post with wrong csrf token refused');
  await page.reload();
  check(!(await page.textContent('#notes')).includes('forged note'), 'forged note not stored');

  // In review, then closed as a false positive.
  await Promise.all([page.waitForLoadState('load'), page.click('button[data-to=in_review]')]);
  check((await page.textContent('#alert-state')) === 'In review', 'moved to in review');
  await page.fill('#fp-form input[name=reason]', 'Song lyrics quoted in an English lesson');
  await Promise.all([page.waitForLoadState('load'), page.click('#fp-form button[type=submit]')]);
  check((await page.textContent('#alert-state')) === 'False positive', 'closed as false positive');

  // Exports.
  await page.goto(`${base}/alerts/${severeId}/record`);
  await accessible(page, null, 'dsl incident record');
  const record = await page.textContent('main');
  check(record.includes('pupil.one') && record.includes('LAB1-PC07') && record.includes('Ed25519'), 'printable incident record');
  const json = await (await page.request.get(`${base}/alerts/${severeId}/record.json`)).json();
  check(json.signature.verified === true && json.signature.body_base64.length > 0, 'json incident record with signature');
  const csv = await (await page.request.get(`${base}/queue.csv?state=all`)).text();
  check(csv.startsWith('id,time,username') && csv.includes('pupil.one'), 'csv export');
  for (const path of ['/rules', '/fleet', '/exemptions', '/tokens', '/settings', '/subject-access', '/notices', '/audit']) {
    await accessible(page, path, `dsl ${path}`);
  }
  await context.close();

  // A technician lands on the fleet, sees no alert and never a capture.
  const tech = await signIn('tech1');
  check(new URL(tech.page.url()).pathname === '/fleet', 'technician lands on the fleet');
  for (const path of ['/fleet', '/rules/publish', '/tokens', '/exemptions']) {
    await accessible(tech.page, path, `technician ${path}`);
  }
  check(!(await tech.page.content()).includes('pupil.one'), 'technician sees no pupil');
  const techCapture = await tech.page.request.get(`${base}/alerts/${severeId}/capture.jpg`);
  check(techCapture.status() === 403, 'technician gets 403 on a capture');
  await tech.page.goto(`${base}/alerts/${severeId}`);
  check(!(await tech.page.content()).includes('kill myself'), 'technician alert page has no context');
  await tech.context.close();

  // The head teacher gets the staff alert, and only that.
  const head = await signIn('head1');
  const headRows = await head.page.textContent('#queue-rows');
  await accessible(head.page, null, 'head queue');
  check(headRows.includes('mr.smith') && !headRows.includes('pupil.one'), 'staff alerts go to the head only');
  await head.context.close();

  // Lockout after repeated failures, even with the right password afterwards.
  let locked = null;
  for (let i = 0; i < 5; i++) {
    locked = await signIn('dsl2', 'wrong password ' + i);
  }
  check((await locked.page.textContent('#login-error')).includes('locked'), 'account locked after five failures');
  await locked.context.close();
  const stillLocked = await signIn('dsl2');
  check(new URL(stillLocked.page.url()).pathname === '/login', 'locked account refused the right password');
  await stillLocked.context.close();

  // The auditor sees each step in an intact chain.
  const auditor = await signIn('audit1');
  check(new URL(auditor.page.url()).pathname === '/audit', 'auditor lands on the audit log');
  await accessible(auditor.page, null, 'auditor audit log');
  check((await auditor.page.textContent('#chain')).includes('intact'), 'audit chain intact');
  const log = await auditor.page.textContent('#audit');
  for (const action of ['login', 'view_alert', 'reveal_capture', 'add_note', 'csrf_refused', 'state_change', 'export_record', 'export_csv', 'denied', 'login_locked']) {
    check(log.includes(action), `audit lists ${action}`);
  }
  const techAudit = await (await signIn('tech1')).page.request.get(`${base}/audit`);
  check(techAudit.status() === 403, 'audit log refused to a technician');
  await auditor.context.close();
  check(violations.length === 0, `no WCAG 2.2 AA violation:\n${violations.join('\n')}`);
  console.log('RESULT ' + JSON.stringify(result));
} catch (e) {
  console.log('RESULT ' + JSON.stringify({ error: String(e && e.stack || e), passed: result }));
  process.exitCode = 1;
} finally {
  lines.close();
  await browser.close();
}
