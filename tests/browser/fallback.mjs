// fallback.mjs: the UIA fallback page as clients use it (started by
// TestBrowserFallback in gateway/fallback_e2e_test.go).
//
// 1. Popup (Element): a client page on another origin calls delete_devices
//    through the gateway, gets the 401 with session S, opens the fallback page
//    with window.open; we type a wrong code, then the right one; the client
//    receives "authDone" by postMessage from its popup, resumes with
//    {auth:{session:S}} (401, completed [m.login.2fa.totp]) and sends the
//    password stage (200). The Go test then checks the device is gone.
// 2. Webview: the fallback page of a held /login session opened directly,
//    with window.onAuthDone defined, is called on success.
//
// Env: GATEWAY_URL, USER_ID, PASSWORD, ACCESS_TOKEN, DEVICE (to delete),
// WRONG_CODE, CODE (for the popup), LOGIN_SESSION, CODE2 (for the webview);
// SCREENSHOTS_DIR (optional).
import { createServer } from 'node:http';
import { assert, env, foreignRequests, log, main, newPhonePage, screenshot, watch } from './lib.mjs';

const gateway = env('GATEWAY_URL');
const cfg = {
  gateway,
  user: env('USER_ID'),
  password: env('PASSWORD'),
  token: env('ACCESS_TOKEN'),
  device: env('DEVICE'),
};
const wrongCode = env('WRONG_CODE');
const code = env('CODE');
const loginSession = env('LOGIN_SESSION');
const code2 = env('CODE2');

const SCRIPT = 'if (window.onAuthDone) { window.onAuthDone(); } else if (window.opener && window.opener.postMessage) { window.opener.postMessage("authDone", "*"); }';

// The client: its own origin, like Element's, talking to the gateway with CORS.
const clientHTML = `<!doctype html><meta charset="utf-8"><title>Client</title>
<button id="start">Start authentication</button>
<script>
window.state = { messages: [] };
async function deleteDevices(auth) {
  const body = { devices: [cfg.device] };
  if (auth) body.auth = auth;
  const r = await fetch(cfg.gateway + '/_matrix/client/v3/delete_devices', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + cfg.token },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}
window.begin = async (c) => {
  window.cfg = c;
  state.first = await deleteDevices(null);
  state.session = state.first.body.session;
  return state.first;
};
document.getElementById('start').onclick = () => {
  state.popup = window.open(cfg.gateway + '/_matrix/client/v3/auth/m.login.2fa.totp/fallback/web?session=' +
    encodeURIComponent(state.session), '_blank');
};
window.addEventListener('message', async (ev) => {
  state.messages.push({ data: ev.data, fromPopup: ev.source === state.popup, origin: ev.origin });
  if (ev.data !== 'authDone' || ev.source !== state.popup) return;
  state.resume = await deleteDevices({ session: state.session });
  state.final = await deleteDevices({ type: 'm.login.password', identifier: { type: 'm.id.user', user: cfg.user },
    password: cfg.password, session: state.session });
});
</script>`;

const server = createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(clientHTML);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const clientURL = `http://127.0.0.1:${server.address().port}/`;

// cspViolations collects CSP reports from a page's console.
function cspWatch(page, name) {
  const seen = [];
  watch(page, name);
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) seen.push(m.text());
  });
  return seen;
}

async function checkStyled(page) {
  const radius = await page.$eval('main.card', (el) => getComputedStyle(el).borderTopLeftRadius);
  assert(radius === '12px', `the stylesheet did not apply (card radius ${radius})`);
}

try {
  await main(async (browser) => {
    const { context, page } = await newPhonePage(browser);
    const foreign = foreignRequests(context, [gateway, clientURL]);

    // --- 1. Popup -----------------------------------------------------
    await page.goto(clientURL);
    const first = await page.evaluate((c) => window.begin(c), cfg);
    assert(first.status === 401, `delete_devices: ${first.status} ${JSON.stringify(first.body)}`);
    log(`delete_devices challenge: session ${first.body.session}, flows ${JSON.stringify(first.body.flows)}`);

    const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#start')]);
    const popupCSP = cspWatch(popup, 'popup');
    await popup.waitForLoadState();
    await popup.waitForSelector('form input#code');
    await checkStyled(popup);
    const label = await popup.textContent('label[for=code]');
    assert(/code/i.test(label), `code label ${label}`);
    assert((await popup.getAttribute('#code', 'autocomplete')) === 'one-time-code', 'autocomplete');
    assert((await popup.getAttribute('#code', 'inputmode')) === 'numeric', 'inputmode');
    assert((await popup.textContent('body')).includes('POST /_matrix/client/v3/delete_devices'), 'the operation is not shown');
    await screenshot(popup, 'fallback-form');

    await popup.fill('#code', wrongCode);
    await Promise.all([popup.waitForNavigation(), popup.click('button[type=submit]')]);
    const err = await popup.textContent('.error');
    assert(err.includes('Invalid code'), `wrong code: ${err}`);
    await screenshot(popup, 'fallback-invalid');

    await popup.fill('#code', code);
    await Promise.all([popup.waitForNavigation(), popup.click('button[type=submit]')]);
    await popup.waitForSelector('text=You may now close this window');
    const html = await popup.content();
    assert(html.includes(SCRIPT), 'the success page does not run the spec script');

    await page.waitForFunction(() => window.state.final !== undefined, null, { timeout: 20000 });
    const state = await page.evaluate(() => ({ messages: window.state.messages, resume: window.state.resume, final: window.state.final }));
    log(`client state: ${JSON.stringify(state)}`);
    assert(state.messages.some((m) => m.data === 'authDone' && m.fromPopup), 'no authDone from the popup');
    assert(state.messages.every((m) => m.origin === new URL(gateway).origin), 'authDone from an unexpected origin');
    assert(state.resume.status === 401, `resume: ${state.resume.status}`);
    assert(JSON.stringify(state.resume.body.completed) === '["m.login.2fa.totp"]', `resume completed ${JSON.stringify(state.resume.body.completed)}`);
    assert(state.final.status === 200, `password stage: ${state.final.status} ${JSON.stringify(state.final.body)}`);
    assert(popupCSP.length === 0, `CSP violations in the popup: ${popupCSP.join('; ')}`);
    await popup.close();

    // --- 2. Webview (window.onAuthDone) -------------------------------
    const web = await context.newPage();
    const webCSP = cspWatch(web, 'webview');
    await web.addInitScript(() => {
      window.onAuthDone = () => {
        window.__authDone = (window.__authDone || 0) + 1;
      };
    });
    await web.goto(`${gateway}/_matrix/client/v3/auth/m.login.2fa.totp/fallback/web?session=${encodeURIComponent(loginSession)}`);
    assert((await web.textContent('body')).includes('Sign-in'), 'the held login is not named a sign-in');
    await web.fill('#code', code2);
    await Promise.all([web.waitForNavigation(), web.click('button[type=submit]')]);
    await web.waitForFunction(() => window.__authDone === 1, null, { timeout: 10000 });
    await checkStyled(web);
    await screenshot(web, 'fallback-done');
    assert(webCSP.length === 0, `CSP violations in the webview: ${webCSP.join('; ')}`);

    assert(foreign.length === 0, `requests to other origins: ${foreign.join(', ')}`);
  });
} finally {
  server.close();
}
