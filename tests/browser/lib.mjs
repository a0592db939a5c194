// Shared helpers of the browser tests. Every script is started by a Go test
// (gateway/browser_helpers_test.go runBrowser), which passes URLs,
// credentials and codes in the environment and fails when the script exits
// non-zero. The browser is the system Chromium; playwright-core never
// downloads one.
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// launch starts headless Chromium with no network side channels (no
// component updates, no sync, no QUIC).
export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

// PHONE is the viewport of the tests and screenshots (a phone, portrait).
export const PHONE = { width: 420, height: 760 };

// newPhonePage opens a page in a fresh context with the phone viewport and
// short timeouts, logging the page's console and errors.
export async function newPhonePage(browser, opts = {}) {
  const context = await browser.newContext({ viewport: PHONE, ...opts });
  context.setDefaultTimeout(20000);
  const page = await context.newPage();
  watch(page);
  return { context, page };
}

// watch logs a page's console messages, uncaught errors and CSP violations
// (Chromium reports them on the console) with a prefix.
export function watch(page, name = 'page') {
  page.on('console', (m) => log(`[${name} console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => log(`[${name} error] ${e.message}`));
  return page;
}

// foreignRequests records every request the context makes to an origin not
// in allowed (e.g. the gateway's and the test server's); assert it stays
// empty: the pages must not load anything from elsewhere.
export function foreignRequests(context, allowed) {
  const origins = new Set(allowed.map((u) => new URL(u).origin));
  const seen = [];
  context.on('request', (req) => {
    const u = req.url();
    if (u.startsWith('data:') || u.startsWith('about:') || u.startsWith('blob:')) return;
    if (!origins.has(new URL(u).origin)) seen.push(u);
  });
  return seen;
}

// totp computes an RFC 6238 code (HMAC-SHA1) for a base32 secret at a Unix
// time in seconds.
export function totp(secretBase32, unixSeconds, digits = 6, period = 30) {
  const key = base32Decode(secretBase32);
  const counter = Math.floor(unixSeconds / period);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const h = createHmac('sha1', key).update(msg).digest();
  const off = h[h.length - 1] & 0x0f;
  const bin = ((h[off] & 0x7f) << 24) | (h[off + 1] << 16) | (h[off + 2] << 8) | h[off + 3];
  return String(bin % 10 ** digits).padStart(digits, '0');
}

export function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = s.toUpperCase().replace(/[\s=-]/g, '');
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of clean) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error(`invalid base32 character ${JSON.stringify(c)}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

export function log(msg) {
  process.stdout.write(`${msg}\n`);
}

// fail reports a failure and exits 1 (the Go test then fails with the output).
export function fail(msg) {
  process.stderr.write(`FAIL: ${msg}\n`);
  process.exit(1);
}

export function assert(cond, msg) {
  if (!cond) fail(msg);
}

// env returns a required environment variable, failing when it is unset.
export function env(name) {
  const v = process.env[name];
  if (v === undefined || v === '') fail(`environment variable ${name} is not set`);
  return v;
}

// screenshot saves page as <SCREENSHOTS_DIR>/<name>.png when SCREENSHOTS_DIR
// is set (a full-page shot at the phone viewport); otherwise does nothing.
export async function screenshot(page, name) {
  const dir = process.env.SCREENSHOTS_DIR;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot: ${file}`);
}

// api sends a JSON request (Node's fetch, outside the browser) and returns
// { status, body } with the body parsed as JSON when possible.
export async function api(method, url, { token, body } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed };
}

// main runs fn with a browser and always closes it; any exception fails the
// test with its stack.
export async function main(fn) {
  let browser;
  try {
    browser = await launch();
    await fn(browser);
    log('PASS');
  } catch (e) {
    if (browser) await browser.close().catch(() => {});
    fail(e && e.stack ? e.stack : String(e));
  }
  await browser.close();
}

// routeIssuer sends the context's requests to issuer (an https origin the
// gateway is configured with as public_base_url, never resolved) to the
// gateway at gatewayURL; cookies go back to Chromium as they are. Chromium
// does not hand a redirect's next request to the route handler when it stays
// on the same origin (Playwright: "the handler will only be called for the
// first url if the response is a redirect"), so a redirect within the issuer
// becomes a page that goes there at once (meta refresh; the same headers,
// Set-Cookie included); redirects elsewhere (to a client) stay redirects.
export async function routeIssuer(context, issuer, gatewayURL) {
  const origin = new URL(issuer).origin;
  await context.route((u) => u.origin === origin, async (r) => {
    const u = new URL(r.request().url());
    const res = await r.fetch({ url: gatewayURL + u.pathname + u.search, maxRedirects: 0 });
    const headers = res.headers();
    const to = headers.location && new URL(headers.location, r.request().url());
    if (!to || to.origin !== origin) {
      await r.fulfill({ response: res });
      return;
    }
    delete headers.location;
    headers['content-type'] = 'text/html; charset=utf-8';
    const target = to.href.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
    await r.fulfill({ status: 200, headers, body: `<!doctype html><meta http-equiv="refresh" content="0;url=${target}">` });
  });
}
