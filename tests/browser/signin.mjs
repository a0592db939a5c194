// signin.mjs: "Sign in with 2FA" end to end (started by TestBrowserSignIn in
// gateway/sso_e2e_test.go).
//
// 1. An allow-listed redirectUrl: a wrong password gets the generic error;
//    username and password, a wrong code (generic error), the right code;
//    the browser lands on the client's callback with loginToken (its own
//    query kept); POST /login m.login.token gives a working access token
//    (whoami), the device is named, and the token works only once.
// 2. A redirectUrl off the allowlist: the "Continue to <host>?" page first,
//    then the same sign-in lands there.
//
// Env: GATEWAY_URL, LOCALPART, PASSWORD, USER_ID, CALLBACK_URL (allow-listed),
// OTHER_URL (not allow-listed), WRONG_CODE, CODE, CODE2; SCREENSHOTS_DIR (optional).
import { api, assert, env, foreignRequests, log, main, newPhonePage, screenshot } from './lib.mjs';

const gateway = env('GATEWAY_URL');
const localpart = env('LOCALPART');
const password = env('PASSWORD');
const userID = env('USER_ID');
const callback = env('CALLBACK_URL');
const other = env('OTHER_URL');
const wrongCode = env('WRONG_CODE');
const code = env('CODE');
const code2 = env('CODE2');

const signInURL = (target) =>
  `${gateway}/_matrix/client/v3/login/sso/redirect/matrix-2fa?redirectUrl=${encodeURIComponent(target)}`;

async function submit(page) {
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
}

async function checkPage(page) {
  const radius = await page.$eval('main.card', (el) => getComputedStyle(el).borderTopLeftRadius);
  assert(radius === '12px', `the stylesheet did not apply (card radius ${radius})`);
  const viewport = await page.$eval('meta[name=viewport]', (el) => el.content);
  assert(viewport.includes('width=device-width'), `viewport ${viewport}`);
}

// redeem checks a login token: a working access token once, then refused.
async function redeem(token, name) {
  const r = await api('POST', `${gateway}/_matrix/client/v3/login`, {
    body: { type: 'm.login.token', token, initial_device_display_name: name },
  });
  assert(r.status === 200, `m.login.token: ${r.status} ${JSON.stringify(r.body)}`);
  assert(r.body.user_id === userID, `logged in as ${r.body.user_id}`);
  const who = await api('GET', `${gateway}/_matrix/client/v3/account/whoami`, { token: r.body.access_token });
  assert(who.status === 200 && who.body.user_id === userID, `whoami: ${who.status} ${JSON.stringify(who.body)}`);
  const again = await api('POST', `${gateway}/_matrix/client/v3/login`, { body: { type: 'm.login.token', token } });
  assert(again.status === 403, `second use of the token: ${again.status} ${JSON.stringify(again.body)}`);
  return r.body;
}

await main(async (browser) => {
  const { context, page } = await newPhonePage(browser);
  const foreign = foreignRequests(context, [gateway, callback]);
  const csp = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) csp.push(m.text());
  });

  // --- 1. Allow-listed client ------------------------------------------
  const target = `${callback}?state=xyz`;
  await page.goto(signInURL(target));
  await checkPage(page);
  assert((await page.textContent('label[for=username]')).includes('Username'), 'username label');
  assert((await page.textContent('label[for=password]')).includes('Password'), 'password label');
  await screenshot(page, 'signin-credentials');

  await page.fill('#username', localpart);
  await page.fill('#password', `${password}-wrong`);
  await submit(page);
  assert((await page.textContent('.error')).includes('Invalid username, password or code'), 'wrong password error');
  assert((await page.$('#code')) === null, 'a wrong password reached the code step');

  await page.fill('#username', localpart);
  await page.fill('#password', password);
  await submit(page);
  await page.waitForSelector('#code');
  assert((await page.getAttribute('#code', 'autocomplete')) === 'one-time-code', 'code autocomplete');
  assert((await page.textContent('body')).includes(userID), 'the code step does not name the user');
  await screenshot(page, 'signin-code');

  await page.fill('#code', wrongCode);
  await submit(page);
  assert((await page.textContent('.error')).includes('Invalid username, password or code'), 'wrong code error');
  await screenshot(page, 'signin-invalid');

  await page.fill('#code', code);
  await Promise.all([page.waitForURL((u) => u.href.startsWith(callback)), page.click('button[type=submit]')]);
  const landed = new URL(page.url());
  log(`landed on ${landed.origin}${landed.pathname}?state=${landed.searchParams.get('state')}&loginToken=…`);
  assert(landed.searchParams.get('state') === 'xyz', `the client's own query was lost: ${landed.search}`);
  const token = landed.searchParams.get('loginToken');
  assert(token && token.length >= 43, `loginToken ${token}`);
  assert((await page.textContent('body')).includes('Back in the client'), 'callback page');
  const login = await redeem(token, 'Browser test');
  log(`signed in: device ${login.device_id}`);

  // --- 2. A client off the allowlist -----------------------------------
  await page.goto(signInURL(other));
  await checkPage(page);
  const host = new URL(other).host;
  assert((await page.textContent('h2')).includes(`Continue to ${host}?`), 'interstitial heading');
  assert((await page.$('#password')) === null, 'credentials asked before the confirmation');
  await screenshot(page, 'signin-confirm');
  await submit(page);
  await page.fill('#username', localpart);
  await page.fill('#password', password);
  await submit(page);
  await page.fill('#code', code2);
  await Promise.all([page.waitForURL((u) => u.href.startsWith(other)), page.click('button[type=submit]')]);
  await redeem(new URL(page.url()).searchParams.get('loginToken'), 'Browser test 2');

  assert(csp.length === 0, `CSP violations: ${csp.join('; ')}`);
  assert(foreign.length === 0, `requests to other origins: ${foreign.join(', ')}`);
});
