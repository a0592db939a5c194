// remember.mjs: "Remember this browser" in Chromium (started by
// TestBrowserRememberBrowser in gateway/remember_e2e_test.go).
//
// The client's page is on another site (localhost, the gateway on
// 127.0.0.1) and links to the sign-in page, as a real client does. First
// sign-in: password, code with "Remember this browser" ticked; the cookie is
// HttpOnly and SameSite=Strict. Second sign-in from the client's link: no
// code step (so the Strict cookie reaches the page's own POST after a
// cross-site arrival). A fresh browser context is asked for the code.
//
// Env: GATEWAY_URL, LOCALPART, PASSWORD, USER_ID, START_URL (the client's
// page, another site), CALLBACK_URL (allow-listed), CODE.
import { api, assert, env, log, main, newPhonePage } from './lib.mjs';

const gateway = env('GATEWAY_URL');
const localpart = env('LOCALPART');
const password = env('PASSWORD');
const userID = env('USER_ID');
const start = env('START_URL');
const callback = env('CALLBACK_URL');
const code = env('CODE');

async function submit(page) {
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
}

// fromClient opens the client's page and follows its link to the sign-in page.
async function fromClient(page) {
  await page.goto(start);
  await followLink(page);
  await page.fill('#username', localpart);
  await page.fill('#password', password);
}

async function followLink(page) {
  await Promise.all([page.waitForNavigation(), page.click('#signin')]);
}

async function redeem(url) {
  const token = new URL(url).searchParams.get('loginToken');
  const r = await api('POST', `${gateway}/_matrix/client/v3/login`, { body: { type: 'm.login.token', token } });
  assert(r.status === 200 && r.body.user_id === userID, `m.login.token: ${r.status} ${JSON.stringify(r.body)}`);
}

await main(async (browser) => {
  const { context, page } = await newPhonePage(browser);
  await fromClient(page);
  await submit(page);
  await page.waitForSelector('#code');
  assert((await page.textContent('label.check')).includes('Remember this browser'), 'no remember checkbox');
  await page.check('#remember');
  await page.fill('#code', code);
  await Promise.all([page.waitForURL((u) => u.href.startsWith(callback)), page.click('button[type=submit]')]);
  await redeem(page.url());
  const cookie = (await context.cookies(gateway + '/_matrix/client/v3/login')).find((c) => c.name === 'm2fa_remember');
  assert(cookie, 'no remember cookie in the browser');
  assert(cookie.httpOnly && cookie.sameSite === 'Strict' && cookie.path === '/_matrix/client/',
    `cookie flags: ${JSON.stringify({ ...cookie, value: '…' })}`);
  log('remembered; signing in again from the client');

  await fromClient(page);
  await Promise.all([page.waitForURL((u) => u.href.startsWith(callback)), page.click('button[type=submit]')]);
  await redeem(page.url());
  log('second sign-in went through without the code');

  const fresh = await newPhonePage(browser);
  await fromClient(fresh.page);
  await submit(fresh.page);
  await fresh.page.waitForSelector('#code');
  log('a fresh browser is asked for the code');
});
