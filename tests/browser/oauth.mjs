// oauth.mjs: matrix-js-sdk's own OAuth 2.0 helpers in headless Chromium sign
// a user in through the gateway, once with 2FA (the authorization page asks
// for the code) and once without. Started by TestBrowserOAuthJSSDK
// (gateway/oauth_browser_e2e_test.go) with GATEWAY_URL, HS_URL, ISSUER (the
// gateway's public URL, https), USER_2FA, PASSWORD_2FA, CODE_2FA, USER_PLAIN,
// PASSWORD_PLAIN, and NEW_USER (not registered yet) for user registration:
// the SDK's authorization URL with prompt=create opens the create view,
// which registers NEW_USER at the homeserver (USER_PLAIN is refused there
// as taken) and signs it in.
//
// The web client is a page on https://app.example/ that loads the SDK
// (bundled here with esbuild from node_modules/matrix-js-sdk) and calls
// MatrixClient.getAuthMetadata (discovery), OAuth2.registerClient (dynamic
// registration), OAuth2.generateAuthorizationCodeGrantUrl (PKCE S256, state,
// the device scope) and OAuth2.completeAuthorizationCodeGrant (the code
// grant), then syncs with the token it got. Chromium reaches the issuer and
// the app through request routing: requests to ISSUER go to the gateway, the
// app's pages are served by this script. No other origin is ever contacted.
import { build } from 'esbuild';
import { api, assert, env, foreignRequests, log, main, newPhonePage, routeIssuer, screenshot } from './lib.mjs';

const gateway = env('GATEWAY_URL');
const hs = env('HS_URL');
const issuer = env('ISSUER');
const app = 'https://app.example';
const redirect = `${app}/cb`;

// bundle is matrix-js-sdk for the browser, as window.sdk.
async function bundle() {
  const out = await build({
    stdin: {
      contents: 'import { createClient, OAuth2, ClientEvent } from "matrix-js-sdk"; window.sdk = { createClient, OAuth2, ClientEvent };',
      resolveDir: new URL('.', import.meta.url).pathname,
    },
    bundle: true,
    platform: 'browser',
    format: 'esm',
    write: false,
    logLevel: 'warning',
  });
  return out.outputFiles[0].text;
}

// route sends the issuer's requests to the gateway (redirects and cookies
// go back to Chromium as they are) and serves the app's shell and bundle.
async function route(context, sdkJS) {
  await routeIssuer(context, issuer, gateway);
  await context.route((u) => u.origin === app, async (r) => {
    if (new URL(r.request().url()).pathname === '/sdk.js') {
      await r.fulfill({ status: 200, contentType: 'text/javascript', body: sdkJS });
      return;
    }
    await r.fulfill({ status: 200, contentType: 'text/html',
      body: '<!doctype html><title>js-sdk app</title><script type="module" src="/sdk.js"></script><p>app</p>' });
  });
}

// startLogin runs discovery, registration and the authorization URL (with
// prompt, if given, which the metadata must offer) in the app page, keeps
// the OAuth context in sessionStorage and goes to the URL.
async function startLogin(page, deviceId, prompt) {
  await page.goto(`${app}/`);
  await page.waitForFunction(() => window.sdk);
  const url = await page.evaluate(async ({ issuer, redirect, deviceId, prompt }) => {
    const client = window.sdk.createClient({ baseUrl: issuer });
    const meta = await client.getAuthMetadata();
    if (prompt && !(meta.prompt_values_supported || []).includes(prompt)) {
      throw new Error(`prompt_values_supported ${JSON.stringify(meta.prompt_values_supported)} lacks ${prompt}`);
    }
    const clientId = await window.sdk.OAuth2.registerClient(meta, { client_name: 'js-sdk test app',
      client_uri: 'https://app.example/', redirect_uris: [redirect], application_type: 'web' });
    const oauth = new window.sdk.OAuth2(meta, { clientId, deviceId });
    const state = crypto.randomUUID();
    sessionStorage.setItem('oauth', JSON.stringify({ meta, context: oauth.context, state }));
    return oauth.generateAuthorizationCodeGrantUrl(state, redirect, 'fragment', prompt);
  }, { issuer, redirect, deviceId, prompt });
  log(`authorization URL: ${url.replace(/code_challenge=[^&]+/, 'code_challenge=…')}`);
  assert(url.startsWith(`${issuer}/_matrix2fa/oauth2/authorize?`), `authorization URL ${url}`);
  assert(/response_mode=fragment/.test(url) && /code_challenge_method=S256/.test(url), 'the SDK asks for fragment and S256');
  await page.goto(url);
}

// finishLogin completes the code grant in the app page, checks state and
// syncs with the token; it returns what the page learnt.
async function finishLogin(page) {
  await page.waitForURL((u) => u.origin === app && u.pathname === '/cb');
  await page.waitForFunction(() => window.sdk);
  return page.evaluate(async ({ issuer, redirect }) => {
    const saved = JSON.parse(sessionStorage.getItem('oauth'));
    const params = new URLSearchParams(location.hash.slice(1));
    if (params.get('state') !== saved.state) throw new Error(`state ${params.get('state')} is not ours`);
    const oauth = new window.sdk.OAuth2(saved.meta, saved.context);
    const tok = await oauth.completeAuthorizationCodeGrant(params.get('code'), redirect);
    const who = await window.sdk.createClient({ baseUrl: issuer, accessToken: tok.access_token }).whoami();
    const client = window.sdk.createClient({ baseUrl: issuer, accessToken: tok.access_token, userId: who.user_id,
      deviceId: who.device_id });
    const synced = new Promise((resolve, reject) => {
      client.on(window.sdk.ClientEvent.Sync, (state, _prev, data) => {
        if (state === 'PREPARED') resolve(state);
        if (state === 'ERROR') reject(new Error(`sync: ${data?.error}`));
      });
    });
    await client.startClient({ initialSyncLimit: 1 });
    const state = await synced;
    client.stopClient();
    return { who, sync: state, token: tok, deviceId: saved.context.deviceId, query: location.search };
  }, { issuer, redirect });
}

// signIn fills the authorization page's username and password.
async function signIn(page, user, password) {
  await page.getByLabel('Username').waitFor();
  assert((await page.content()).includes('js-sdk test app'), 'the page names the client');
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in and allow' }).click();
}

// create fills the create view: username, the password twice.
async function create(page, user, password) {
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByLabel('Password again').fill(password);
  await page.getByRole('button', { name: 'Create account and allow' }).click();
}

// register walks the create view: the links between the views, a taken
// username refused in a sentence, then NEW_USER registered and signed in.
async function register(page) {
  await page.getByLabel('Password again').waitFor();
  assert(/prompt=create/.test(page.url()), `prompt=create not in ${page.url()}`);
  const body = await page.content();
  assert(body.includes('js-sdk test app') && !body.includes('name="token"'), 'the create view names the client, asks for no token');
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign in and allow' }).waitFor();
  await page.getByRole('link', { name: 'Create an account' }).click();
  await page.getByLabel('Password again').waitFor();
  await create(page, env('USER_PLAIN'), env('PASSWORD_PLAIN'));
  await page.getByText('That username is taken').waitFor();
  assert(new URL(page.url()).origin === new URL(issuer).origin, `a taken username left the page for ${page.url()}`);
  await screenshot(page, 'oauth-create-taken');
  await create(page, env('NEW_USER'), env('PASSWORD_PLAIN'));
}

// checkDevice checks, at the homeserver itself, that the token is the
// device the SDK asked for, and that /sync works with it through the gateway.
async function checkDevice(user, res) {
  const who = await api('GET', `${hs}/_matrix/client/v3/account/whoami`, { token: res.token.access_token });
  assert(who.status === 200 && who.body.device_id === res.deviceId, `homeserver whoami ${JSON.stringify(who.body)}; want device ${res.deviceId}`);
  assert(who.body.user_id.startsWith(`@${user}:`), `homeserver whoami user ${who.body.user_id}`);
  const devs = await api('GET', `${hs}/_matrix/client/v3/devices`, { token: res.token.access_token });
  assert(devs.body.devices.some((d) => d.device_id === res.deviceId), `device ${res.deviceId} not in ${JSON.stringify(devs.body)}`);
  const sync = await api('GET', `${gateway}/_matrix/client/v3/sync?timeout=0`, { token: res.token.access_token });
  assert(sync.status === 200 && sync.body.next_batch, `sync through the gateway: ${sync.status}`);
  assert(res.sync === 'PREPARED' && res.token.refresh_token && res.token.token_type === 'Bearer', `page result ${JSON.stringify(res.sync)}`);
  assert(res.query === '', 'the code came in the fragment, not the query');
  log(`${user}: signed in as ${who.body.user_id} on device ${res.deviceId}; sync PREPARED`);
}

await main(async (browser) => {
  const sdkJS = await bundle();
  log(`matrix-js-sdk bundle: ${sdkJS.length} bytes`);

  // Without 2FA: username and password, then straight back to the app.
  let { context, page } = await newPhonePage(browser);
  let foreign = foreignRequests(context, [issuer, app]);
  await route(context, sdkJS);
  await startLogin(page, 'JSSDKPLAIN');
  await signIn(page, env('USER_PLAIN'), env('PASSWORD_PLAIN'));
  await checkDevice(env('USER_PLAIN'), await finishLogin(page));
  assert(foreign.length === 0, `requests to other origins: ${foreign}`);
  await context.close();

  // With 2FA: the page asks for the code before going back.
  ({ context, page } = await newPhonePage(browser));
  foreign = foreignRequests(context, [issuer, app]);
  await route(context, sdkJS);
  await startLogin(page, 'JSSDK2FA01');
  await signIn(page, env('USER_2FA'), env('PASSWORD_2FA'));
  const field = page.getByLabel('Authentication code');
  await field.waitFor();
  assert(new URL(page.url()).origin === new URL(issuer).origin, `asked for the code at ${page.url()}`);
  await screenshot(page, 'oauth-code');
  await field.fill(env('CODE_2FA'));
  await page.getByRole('button', { name: 'Sign in and allow' }).click();
  await checkDevice(env('USER_2FA'), await finishLogin(page));
  assert(foreign.length === 0, `requests to other origins: ${foreign}`);
  await context.close();

  // A new user: prompt=create, the create view, back to the app.
  ({ context, page } = await newPhonePage(browser));
  foreign = foreignRequests(context, [issuer, app]);
  await route(context, sdkJS);
  await startLogin(page, 'JSSDKNEW01', 'create');
  await register(page);
  await checkDevice(env('NEW_USER'), await finishLogin(page));
  assert(foreign.length === 0, `requests to other origins: ${foreign}`);
  await context.close();
});
