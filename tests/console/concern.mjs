// 'Report a concern' in headless Chromium: a pupil sends a named report,
// another an anonymous one asking for help now (from a browser with a
// telltale user agent, which must not be kept); bad forms get a clear
// answer; the DSL finds both reports in the queue. Ends with one
// `RESULT <json>` line; any failed check throws.
//
// Environment: CONSOLE_URL, PASSWORD (the DSL's, account dsl1), USER_AGENT
// (the anonymous pupil's browser), CHROMIUM.
import { chromium } from 'playwright-core';

const base = process.env.CONSOLE_URL;
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

async function pupilPage(userAgent) {
  const context = await browser.newContext({ viewport: { width: 900, height: 900 }, userAgent });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const response = await page.goto(`${base}/concern`);
  check(response.status() === 200, 'report page served without sign-in');
  check(!('set-cookie' in response.headers()), 'report page sets no cookie');
  return { context, page };
}

async function send(page) {
  const [response] = await Promise.all([
    page.waitForNavigation(),
    page.click('#concern-form button[type=submit]'),
  ]);
  return response;
}

try {
  // A named report about bullying.
  const named = await pupilPage(undefined);
  await named.page.fill('#text', 'Someone in my tutor group keeps taking my phone and posting my photos.');
  await named.page.fill('#name', 'pupil.dara');
  await named.page.selectOption('#category', 'bullying');
  await send(named.page);
  check((await named.page.textContent('#concern-sent')).includes('Thank you'), 'named report sent');
  check((await named.page.textContent('main')).includes('someone may come and talk to you'), 'named writer told someone may come');
  check((await named.context.cookies()).length === 0, 'no cookie after a named report');
  await named.context.close();

  // An anonymous report: help now, no name, no category.
  const anon = await pupilPage(process.env.USER_AGENT);
  await anon.page.fill('#text', 'I am scared to go home tonight because of what happens there.');
  await anon.page.check('#help-now');
  await send(anon.page);
  const sent = await anon.page.textContent('main');
  check(sent.includes('Thank you') && sent.includes('a safeguarding lead has been emailed'), 'help-now report sent');
  check(sent.includes('nobody can reply to you here'), 'anonymous writer told nobody can reply');
  check((await anon.context.cookies()).length === 0, 'no cookie after an anonymous report');

  // Bad input: each gets a clear answer and the words are kept on the page.
  await anon.page.goto(`${base}/concern`);
  const token = await anon.page.getAttribute('input[name=token]', 'value');
  const empty = await anon.page.request.post(`${base}/concern`, { form: { token, text: '   ', name: '' } });
  check(empty.status() === 400 && (await empty.text()).includes('Your report is empty'), 'empty report refused clearly');
  const long = await anon.page.request.post(`${base}/concern`, { form: { token, text: 'x'.repeat(4001) } });
  check(long.status() === 400 && (await long.text()).includes('too long'), 'over-long report refused clearly');
  const huge = await anon.page.request.post(`${base}/concern`, { form: { token, text: 'y'.repeat(200000) } });
  check(huge.status() === 413 && (await huge.text()).includes('4,000 characters'), 'oversized form refused clearly');
  const forged = await anon.page.request.post(`${base}/concern`, { form: { text: 'forged report without a token' } });
  check(forged.status() === 403 && (await forged.text()).includes('forged report without a token'), 'report without a form token refused, words kept');
  const crossSite = await anon.page.request.post(`${base}/concern`, {
    form: { token, text: 'a report posted from another site' },
    headers: { 'Sec-Fetch-Site': 'cross-site' },
  });
  check(crossSite.status() === 403, 'report from another site refused');
  // The token of the report already sent cannot be used again.
  await anon.page.goto(`${base}/concern`);
  await anon.page.fill('#text', 'first use of this form');
  const usedToken = await anon.page.getAttribute('input[name=token]', 'value');
  await send(anon.page);
  const replay = await anon.page.request.post(`${base}/concern`, { form: { token: usedToken, text: 'replayed report' } });
  check(replay.status() === 403 && (await replay.text()).includes('already sent'), 'a used form token refused');
  await anon.context.close();

  // The DSL finds the reports in the queue, marked as pupils' reports.
  const dslContext = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await dslContext.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(`${base}/login`);
  await page.fill('input[name=name]', 'dsl1');
  await page.fill('input[name=password]', process.env.PASSWORD);
  await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
  const rows = await page.textContent('#queue-rows');
  check(rows.includes('pupil report') && rows.includes('pupil.dara') && rows.includes('anonymous'), 'reports in the DSL queue');
  const first = page.locator('#queue-rows tr').first();
  check((await first.textContent()).includes('anonymous'), 'help-now report first in the queue');
  await Promise.all([page.waitForLoadState('load'), first.locator('a.open').click()]);
  check((await page.textContent('#signature')).includes('Pupil report'), 'report marked as a pupil report');
  check((await page.textContent('#context')).includes('scared to go home'), 'report words shown to the DSL');
  await Promise.all([page.waitForLoadState('load'), page.click('button[data-to=in_review]')]);
  check((await page.textContent('#alert-state')) === 'In review', 'report follows the review workflow');
  await dslContext.close();
  console.log('RESULT ' + JSON.stringify(result));
} catch (e) {
  console.log('RESULT ' + JSON.stringify({ error: String(e && e.stack || e), passed: result }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
