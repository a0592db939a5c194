// admin.mjs: the admin page (/_matrix2fa/admin/) in headless Chromium: a
// homeserver admin with 2FA signs in (password, then their code), a forged
// form (no or a wrong CSRF token, sent with the admin's cookies) is refused,
// then the admin finds a locked user, unlocks them, and resets their 2FA
// through the confirmation step. Started by TestBrowserAdminPage
// (gateway/admin_page_e2e_test.go) with GATEWAY_URL, ADMIN_USERNAME,
// ADMIN_PASSWORD, ADMIN_CODE and TARGET (the user ID to act on); with
// SCREENSHOTS_DIR set it saves admin-*.png there.
import { assert, env, foreignRequests, log, main, newPhonePage, screenshot } from './lib.mjs';

const base = env('GATEWAY_URL');
const pageURL = `${base}/_matrix2fa/admin/`;
const target = env('TARGET');

async function submit(page, button) {
  const [res] = await Promise.all([page.waitForNavigation(), button.click()]);
  return res;
}

async function text(page, selector) {
  return (await page.locator(selector).textContent()).replace(/\s+/g, ' ').trim();
}

await main(async (browser) => {
  const { context, page } = await newPhonePage(browser);
  const foreign = foreignRequests(context, [base]);
  const violations = [];
  page.on('console', (m) => {
    if (/Content[- ]Security[- ]Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });

  // Sign in: password, then the admin's own code.
  let res = await page.goto(pageURL);
  assert(res.status() === 200, `GET page: ${res.status()}`);
  const csp = res.headers()['content-security-policy'] || '';
  assert(csp.includes("default-src 'none'") && csp.includes("frame-ancestors 'none'"), `CSP: ${csp}`);
  await page.getByLabel('Username').fill(env('ADMIN_USERNAME'));
  await page.getByLabel('Password').fill(env('ADMIN_PASSWORD'));
  res = await submit(page, page.getByRole('button', { name: 'Sign in' }));
  assert(res.status() === 200, `sign-in: ${res.status()}`);
  await page.getByLabel('Authentication code').fill(env('ADMIN_CODE'));
  res = await submit(page, page.getByRole('button', { name: 'Continue' }));
  assert(res.status() === 200, `code: ${res.status()}`);
  assert((await text(page, '#admin')).length > 0, 'not signed in');
  await screenshot(page, 'admin-home');
  log('signed in');

  // CSRF: forms without a valid token are refused, even with the cookies.
  for (const csrf of [undefined, 'forged-token']) {
    const form = { action: 'unlock', user: target };
    if (csrf) form.csrf = csrf;
    const r = await context.request.post(pageURL, { form, maxRedirects: 0 });
    assert(r.status() === 403, `forged unlock (csrf ${csrf}): ${r.status()}`);
    assert((await r.text()).includes('did not come from this page'), 'forged unlock: no CSRF message');
  }
  log('forged forms refused');

  // Find the locked user; unlock.
  await page.getByLabel('Find a user').fill(target);
  res = await submit(page, page.getByRole('button', { name: 'Show' }));
  assert(res.status() === 200, `find: ${res.status()}`);
  assert((await page.locator('#locked').getAttribute('data-locked')) === 'true', `not shown locked: ${await text(page, '#locked')}`);
  assert((await page.locator('#status').getAttribute('data-enabled')) === 'true', 'not shown enabled');
  await screenshot(page, 'admin-user-locked');
  res = await submit(page, page.getByRole('button', { name: 'Unlock' }));
  assert(res.status() === 200, `unlock: ${res.status()}`);
  assert((await text(page, '#notice')).startsWith('Unlocked'), `unlock notice: ${await text(page, '#notice')}`);
  assert((await page.locator('#locked').getAttribute('data-locked')) === 'false', 'still locked');
  log('unlocked');

  // Reset, through the confirmation step (a mistyped user ID changes nothing).
  res = await submit(page, page.getByRole('button', { name: 'Reset two-factor authentication…' }));
  assert(res.status() === 200, `reset-ask: ${res.status()}`);
  await screenshot(page, 'admin-confirm');
  await page.getByLabel('Type the user ID to confirm').fill(target + 'x');
  res = await submit(page, page.getByRole('button', { name: 'Reset', exact: true }));
  assert(res.status() === 400, `mistyped confirmation: ${res.status()}`);
  await page.getByLabel('Type the user ID to confirm').fill(target);
  res = await submit(page, page.getByRole('button', { name: 'Reset', exact: true }));
  assert(res.status() === 200, `reset: ${res.status()}`);
  assert((await text(page, '#notice')).startsWith('Reset'), `reset notice: ${await text(page, '#notice')}`);
  assert((await page.locator('#status').getAttribute('data-enabled')) === 'false', 'still enabled');
  const audit = await text(page, '#audit');
  assert(audit.includes('admin_reset') && audit.includes('unlock'), `audit: ${audit}`);
  await screenshot(page, 'admin-reset');
  log('reset');

  res = await submit(page, page.getByRole('button', { name: 'Sign out' }));
  assert(res.status() === 200 && (await page.getByLabel('Username').isVisible()), 'sign-out');
  assert(foreign.length === 0, `requests to other origins: ${foreign.join(', ')}`);
  assert(violations.length === 0, `CSP violations: ${violations.join(' | ')}`);
});
