// The review console of two collectors on one PostgreSQL, in headless
// Chromium: a DSL signs in on the first, finds the alert in the queue,
// opens it and starts its review; on the second collector the alert shows
// that state, and a deputy escalates it there; back on the first, the page
// shows the escalation; the navigation's Fleet, Exemptions, Notice, Publish
// rules and Subject access pages are served by both. Ends with one `RESULT <json>` line; a failed check
// throws.
//
// Environment: CONSOLE_A, CONSOLE_B, PASSWORD, ALERT_ID, CHROMIUM.
import { chromium } from 'playwright-core';

const [a, b] = [process.env.CONSOLE_A, process.env.CONSOLE_B];
const password = process.env.PASSWORD;
const id = process.env.ALERT_ID;
const result = {};

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  result[what] = true;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

async function signIn(base, name) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(`${base}/login`);
  await page.fill('input[name=name]', name);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
  return page;
}

async function state(page) {
  return (await page.textContent('#alert-state')).trim();
}

try {
  const dsl = await signIn(a, 'dsl1');
  check(new URL(dsl.url()).pathname === '/queue', 'signed in on the first collector');
  const row = dsl.locator(`#queue-rows tr[data-id="${id}"]`);
  check(await row.count() === 1, 'the alert stored through ingest is in the queue');
  check((await row.textContent()).includes('pupil.one'), 'the queue row names the pupil');
  await Promise.all([dsl.waitForLoadState('load'), row.locator('a.open').click()]);
  check(new URL(dsl.url()).pathname === `/alerts/${id}`, 'the alert page opens');
  check(await state(dsl) === 'New', 'the alert is new');
  check((await dsl.textContent('#signature')).includes('Signature verified'),
    'the signature verifies against the key kept in PostgreSQL');
  check((await dsl.textContent('#context')).includes('kill myself'), 'the context is shown');
  await Promise.all([dsl.waitForLoadState('load'), dsl.click('button[data-to=in_review]')]);
  check(await state(dsl) === 'In review', 'the review starts on the first collector');

  const deputy = await signIn(b, 'dsl2');
  await deputy.goto(`${b}/alerts/${id}`);
  check(await state(deputy) === 'In review', 'the second collector shows the review state');
  await Promise.all([deputy.waitForLoadState('load'), deputy.click('button[data-to=escalated]')]);
  check(await state(deputy) === 'Escalated', 'the deputy escalates it on the second collector');

  await dsl.reload();
  check(await state(dsl) === 'Escalated', 'the first collector shows the escalation');
  // Every link in the navigation leads to a page, on either collector.
  const links = await dsl.locator('nav a').evaluateAll((as) => as.map((x) => x.getAttribute('href')));
  for (const href of ['/fleet', '/exemptions', '/notices', '/rules/publish', '/subject-access']) {
    check(links.includes(href), `the navigation links to ${href}`);
    const r = await dsl.request.get(`${b}${href}`);
    check(r.status() === 200, `${href} is served on PostgreSQL`);
  }
  await Promise.all([dsl.waitForLoadState('load'), dsl.click('nav a[href="/fleet"]')]);
  check((await dsl.textContent('#fleet')).includes('LAB1-PC07'),
    'the Fleet page lists the station enrolled through the first collector');
  await Promise.all([deputy.waitForLoadState('load'), deputy.click('nav a[href="/exemptions"]')]);
  check(await deputy.locator('#add-exemption').count() === 1,
    'the Exemptions page offers the deputy its form on the second collector');
  console.log(`RESULT ${JSON.stringify(result)}`);
} finally {
  await browser.close();
}
