// policy.mjs: the enforcement policy in Chromium (started by
// TestBrowserPolicyEnrol in gateway/policy_pages_e2e_test.go).
//
// The user is under policy `all`, the grace period is over and they have no
// 2FA: their old access token is refused at /sync with an error naming the
// enrolment page. On "Sign in with 2FA", after the password, the page
// requires enrolment (no "Not now"): QR code, a code from the key shown,
// then the recovery codes, once; "continue" lands on the client's callback
// with a login token, whose access token syncs, and the old one syncs again
// too. The next sign-in asks for a code.
//
// Env: GATEWAY_URL, LOCALPART, PASSWORD, USER_ID, ACCESS_TOKEN, GATEWAY_TIME,
// CALLBACK_URL (allow-listed); SCREENSHOTS_DIR (optional).
import { api, assert, env, foreignRequests, log, main, newPhonePage, screenshot, totp } from './lib.mjs';

const gateway = env('GATEWAY_URL');
const localpart = env('LOCALPART');
const password = env('PASSWORD');
const userID = env('USER_ID');
const oldToken = env('ACCESS_TOKEN');
const now = Number(env('GATEWAY_TIME'));
const callback = env('CALLBACK_URL');

const signInURL = `${gateway}/_matrix/client/v3/login/sso/redirect/matrix-2fa?redirectUrl=${encodeURIComponent(callback)}`;
const sync = (token) => api('GET', `${gateway}/_matrix/client/v3/sync?timeout=0`, { token });

async function submit(page) {
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
}

async function credentials(page) {
  await page.goto(signInURL);
  await page.fill('#username', localpart);
  await page.fill('#password', password);
  await submit(page);
}

await main(async (browser) => {
  const blocked = await sync(oldToken);
  assert(blocked.status === 403 && blocked.body.errcode === 'M_FORBIDDEN' && blocked.body.error.includes(`${gateway}/_matrix2fa/`),
    `old token before enrolling: ${blocked.status} ${JSON.stringify(blocked.body)}`);
  log('the old token is refused, naming the enrolment page');

  const { context, page } = await newPhonePage(browser);
  const foreign = foreignRequests(context, [gateway, callback]);
  await credentials(page);
  await page.waitForSelector('#qr');
  assert((await page.textContent('#policy')).includes('requires two-factor authentication'), 'no "required" notice');
  assert((await page.$('#skip')) === null, '"Not now" offered after the grace period');
  await screenshot(page, 'policy-enrol');
  const secret = await page.getAttribute('#secret', 'data-secret');
  await page.fill('#confirm-code', totp(secret, now));
  await submit(page);
  await page.waitForSelector('#codes');
  const codes = await page.$$eval('#codes li', (els) => els.map((e) => e.textContent.trim()));
  assert(codes.length >= 8, `recovery codes: ${codes}`);
  await screenshot(page, 'policy-codes');
  await Promise.all([page.waitForURL((u) => u.href.startsWith(callback)), page.click('#continue')]);
  log('enrolled; back at the client');

  const token = new URL(page.url()).searchParams.get('loginToken');
  const login = await api('POST', `${gateway}/_matrix/client/v3/login`, { body: { type: 'm.login.token', token } });
  assert(login.status === 200 && login.body.user_id === userID, `m.login.token: ${login.status} ${JSON.stringify(login.body)}`);
  const fresh = await sync(login.body.access_token);
  assert(fresh.status === 200, `sync with the new token: ${fresh.status} ${JSON.stringify(fresh.body)}`);
  const old = await sync(oldToken);
  assert(old.status === 200, `sync with the old token after enrolling: ${old.status} ${JSON.stringify(old.body)}`);
  log('the new and the old token sync');

  await credentials(page);
  await page.waitForSelector('#code');
  await page.fill('#code', totp(secret, now + 30));
  await Promise.all([page.waitForURL((u) => u.href.startsWith(callback)), page.click('button[type=submit]')]);
  log('the next sign-in asks for the code');
  assert(foreign.length === 0, `requests to other origins: ${foreign}`);
});
