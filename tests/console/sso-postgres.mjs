// Staff single sign-on on a collector whose store is PostgreSQL, in
// headless Chromium against a real OpenID provider (oidc-provider.mjs): a
// DSL mapped by group signs in and reaches the queue; the head's address
// belongs to a local account, so the head's sign-in is refused. Ends with
// one `RESULT <json>` line; any failed check throws.
//
// Environment: CONSOLE_URL, CHROMIUM.
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

// Signs in at the provider's login and consent pages from the console's button.
async function providerSignIn(login) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(`${base}/login`);
  await page.click('#sso-school');
  await page.waitForSelector('input[name=login]');
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any password');
  await page.click('button[type=submit]');
  await page.waitForSelector('button[type=submit]:has-text("Continue")');
  await page.click('button[type=submit]');
  await page.waitForLoadState('load');
  return page;
}

try {
  const dsl = await providerSignIn('dsl@school.test');
  await dsl.waitForURL(`${base}/queue`);
  check((await dsl.textContent('.who')).includes('dsl@school.test (dsl)'), 'group-mapped account is a DSL');
  check(await dsl.isVisible('#queue-rows'), 'the DSL sees the queue');

  const head = await providerSignIn('head@school.test');
  check(((await head.textContent('#sso-error')) || '').includes('local console account'),
    'a local account is not taken over');
  console.log(`RESULT ${JSON.stringify(result)}`);
} finally {
  await browser.close();
}
