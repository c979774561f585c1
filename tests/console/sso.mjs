// Staff single sign-on in headless Chromium against a real OpenID provider
// (oidc-provider.mjs): mapped accounts sign in and reach the queue with
// their role; a replayed callback, a callback carried to another browser,
// an unmapped account, an ID token for another audience and an expired
// one are refused with a clear page; misconfigured providers (unreachable,
// wrong issuer, wrong client secret) say so; the local break-glass account
// still signs in. Ends with one `RESULT <json>` line; any failed check throws.
//
// Environment: CONSOLE_URL, PASSWORD (the local account `breakglass`), CHROMIUM.
import { chromium } from 'playwright-core';
import { audit } from './a11y.mjs';

const base = process.env.CONSOLE_URL;
const result = {};
// WCAG 2.2 AA violations (axe-core) on the pages single sign-on adds.
const violations = [];

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  result[what] = true;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

let current = null;

async function fresh() {
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  const page = await context.newPage();
  current = page;
  page.setDefaultTimeout(15000);
  return { context, page };
}

// Signs in at the provider's own login and consent pages, starting from
// the console's button, or from `authUrl` when given; returns the callback URL.
async function providerSignIn(page, provider, login, authUrl = null) {
  let callback = null;
  page.on('request', (r) => { if (r.url().includes('/callback?')) callback = r.url(); });
  if (authUrl) {
    await page.goto(authUrl);
  } else {
    await page.goto(`${base}/login`);
    await page.click(`#sso-${provider}`);
  }
  await page.waitForSelector('input[name=login]');
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any password');
  await page.click('button[type=submit]');
  await page.waitForSelector('button[type=submit]:has-text("Continue")');
  await page.click('button[type=submit]');
  await page.waitForLoadState('load');
  return callback;
}

async function errorText(page) {
  return (await page.textContent('#sso-error')) || '';
}

try {
  // The sign-in page offers the provider beside the password form.
  {
    const { context, page } = await fresh();
    await page.goto(`${base}/login`);
    check((await page.textContent('#sso-school')).includes('Sign in with School account'), 'sign-in page offers the provider');
    check(await page.isVisible('input[name=password]'), 'password form still offered');
    violations.push(...await audit(page, 'sign-in with single sign-on'));
    await context.close();
  }

  // A DSL mapped by group signs in and sees the queue as a DSL.
  const dsl = await fresh();
  const callback = await providerSignIn(dsl.page, 'school', 'dsl@school.test');
  await dsl.page.waitForURL(`${base}/queue`);
  check((await dsl.page.textContent('.who')).includes('dsl@school.test (dsl)'), 'group-mapped account is a DSL');
  check(await dsl.page.isVisible('#queue-rows'), 'the DSL sees the queue');
  const cookies = await dsl.context.cookies();
  const session = cookies.find((c) => c.name === 'tutela_session');
  check(session && session.httpOnly && session.sameSite === 'Strict', 'session cookie is HttpOnly and SameSite=Strict');
  check(!cookies.some((c) => c.name === 'tutela_oidc' && c.value), 'binding cookie cleared after the callback');

  // The same callback again (same browser) is refused: the state is single use.
  const replay = await dsl.page.goto(callback);
  check(replay.status() === 403, 'replayed callback refused');
  check((await errorText(dsl.page)).includes('used already'), 'replay page says the link was used');
  await dsl.context.close();

  // A head teacher mapped by email (the mapping is case-insensitive).
  {
    const { context, page } = await fresh();
    await providerSignIn(page, 'school', 'head@school.test');
    await page.waitForURL(`${base}/queue`);
    check((await page.textContent('.who')).includes('head@school.test (head)'), 'email-mapped account is the head');
    await context.close();
  }

  // A sign-in begun in one browser and finished in another (login CSRF, or
  // a callback link passed on) is refused: the binding cookie is missing.
  {
    const a = await fresh();
    const begun = await a.context.request.get(`${base}/login/oidc/school`, { maxRedirects: 0 });
    check(begun.status() === 303, 'sign-in begins with a redirect to the provider');
    const auth = new URL(begun.headers().location);
    const q = auth.searchParams;
    check(q.get('response_type') === 'code' && q.get('code_challenge_method') === 'S256'
      && q.get('code_challenge').length === 43 && q.get('state').length >= 43 && q.get('nonce').length >= 43,
    'authorisation request carries PKCE S256, state and nonce');
    check(q.get('scope') === 'openid email groups' && q.get('prompt') === 'login', 'scopes and prompt as configured');
    const binding = (await a.context.cookies()).find((c) => c.name === 'tutela_oidc');
    check(binding && binding.httpOnly && binding.sameSite === 'Lax', 'binding cookie is HttpOnly and SameSite=Lax');
    const b = await fresh();
    await providerSignIn(b.page, 'school', 'dsl@school.test', begun.headers().location);
    check((await errorText(b.page)).includes('another browser'), 'callback in another browser refused');
    check(!(await b.context.cookies()).some((c) => c.name === 'tutela_session'), 'no session in the other browser');
    await a.context.close();
    await b.context.close();
  }

  // An account the school has not mapped to a role.
  {
    const { context, page } = await fresh();
    await providerSignIn(page, 'school', 'visitor@school.test');
    check((await errorText(page)).includes('no role in this console'), 'unmapped account refused with a clear page');
    violations.push(...await audit(page, 'sign-in refused'));
    check(!(await context.cookies()).some((c) => c.name === 'tutela_session'), 'no session for an unmapped account');
    await context.close();
  }

  // ID tokens the console must refuse, though signed with the provider's key.
  for (const [login, what] of [['wrong-audience@school.test', 'wrong audience'], ['expired@school.test', 'expired token']]) {
    const { context, page } = await fresh();
    await providerSignIn(page, 'school', login);
    check((await errorText(page)).includes("did not pass the console's checks"), `${what} refused`);
    check(!(await context.cookies()).some((c) => c.name === 'tutela_session'), `no session for a ${what}`);
    await context.close();
  }

  // Misconfigured providers: clear pages, and the password form still works.
  {
    const { context, page } = await fresh();
    await page.goto(`${base}/login`);
    await page.click('#sso-down');
    check((await errorText(page)).includes('could not be reached'), 'unreachable provider explained');
    violations.push(...await audit(page, 'provider unreachable'));
    await page.goto(`${base}/login`);
    await page.click('#sso-wrongissuer');
    check((await errorText(page)).includes('do not fit'), 'wrong issuer explained');
    await providerSignIn(page, 'badsecret', 'dsl@school.test');
    check((await errorText(page)).includes('do not fit'), 'bad client secret explained');
    await page.goto(`${base}/login`);
    check((await page.textContent('#sso')).includes('Sign-in with Broken is unavailable'), 'invalid configuration noted on the sign-in page');
    await page.fill('input[name=name]', 'breakglass');
    await page.fill('input[name=password]', process.env.PASSWORD);
    await page.click('form.login button[type=submit]:has-text("Sign in")');
    await page.waitForURL(`${base}/queue`);
    check((await page.textContent('.who')).includes('breakglass (dsl)'), 'local break-glass account signs in');
    await context.close();
  }
  if (violations.length) throw new Error(`accessibility violations: ${violations.join('; ')}`);
  result['no accessibility violation'] = true;
} catch (e) {
  result.error = String(e && e.stack || e);
  if (current && !current.isClosed()) {
    result.url = current.url();
    result.text = (await current.textContent('body').catch(() => '') || '').slice(0, 600);
  }
}
await browser.close();
console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(result.error ? 1 : 0);
