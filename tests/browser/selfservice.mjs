// selfservice.mjs: the self-service 2FA page (/_matrix2fa/) in headless
// Chromium, as a person would use it: sign in, set up 2FA by scanning the QR
// code shown (decoded with zbarimg), confirm with the app's code, keep the
// recovery codes, make new ones, turn 2FA off, sign out. Started by
// TestBrowserSelfService (gateway/selfservice_e2e_test.go) with GATEWAY_URL,
// USERNAME, PASSWORD and GATEWAY_TIME (the gateway's fixed clock, Unix
// seconds); with SCREENSHOTS_DIR set it saves self-*.png there.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, env, foreignRequests, log, main, newPhonePage, screenshot, totp } from './lib.mjs';

const base = env('GATEWAY_URL');
const pageURL = `${base}/_matrix2fa/`;
const username = env('USERNAME');
const password = env('PASSWORD');
const now = Number(env('GATEWAY_TIME'));
const work = mkdtempSync(join(tmpdir(), 'selfservice-'));

// zbar decodes a QR code image file to its text.
function zbar(file) {
  return execFileSync('zbarimg', ['--raw', '--quiet', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
}

// submit clicks a form's button and waits for the page that answers.
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

  // Sign in with the Matrix password (no 2FA yet: one step).
  let res = await page.goto(pageURL);
  assert(res.status() === 200, `GET page: ${res.status()}`);
  assert(await page.getByLabel('Username').isVisible(), 'no labelled username field');
  await screenshot(page, 'self-signin');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  res = await submit(page, page.getByRole('button', { name: 'Sign in' }));
  assert(res.status() === 200, `sign-in: ${res.status()}`);
  assert((await text(page, '#status')).includes('is off'), `status: ${await text(page, '#status')}`);
  await screenshot(page, 'self-status');

  // Enrol: the QR code on the page, decoded as a phone's camera would.
  res = await submit(page, page.getByRole('button', { name: 'Set up two-factor authentication' }));
  assert(res.status() === 200, `enrol: ${res.status()}`);
  const qr = page.getByAltText('QR code for your authenticator app');
  await qr.waitFor();
  assert(await qr.evaluate((img) => img.complete && img.naturalWidth > 0), 'the QR image did not load');
  const shot = join(work, 'qr-shown.png');
  await qr.screenshot({ path: shot });
  const uri = zbar(shot);
  log(`QR code shown on the page decodes to ${uri.replace(/secret=[A-Z2-7]+/, 'secret=…')}`);
  assert(uri.startsWith('otpauth://totp/'), `QR decodes to ${uri}`);
  // The image's own bytes say the same.
  const src = await qr.getAttribute('src');
  assert(src.startsWith('data:image/png;base64,'), `QR src ${src.slice(0, 40)}`);
  const raw = join(work, 'qr-data.png');
  writeFileSync(raw, Buffer.from(src.slice('data:image/png;base64,'.length), 'base64'));
  assert(zbar(raw) === uri, 'the data: URL and the rendered image decode differently');
  const params = new URL(uri).searchParams;
  const secret = params.get('secret');
  assert(secret && /^[A-Z2-7]+$/.test(secret), `secret in URI: ${secret}`);
  const shownSecret = (await text(page, '#secret')).replace(/ /g, '');
  assert(shownSecret === secret, `secret on the page ${shownSecret} differs from the QR's`);
  assert(params.get('digits') === '6' && params.get('period') === '30', `URI params ${params}`);
  const field = page.getByLabel('Code from your authenticator app');
  assert((await field.getAttribute('autocomplete')) === 'one-time-code', 'confirm field autocomplete');
  assert((await field.getAttribute('inputmode')) === 'numeric', 'confirm field inputmode');
  await screenshot(page, 'self-enrol');

  // Confirm with the code of the current step: 10 recovery codes, once.
  await field.fill(totp(secret, now));
  res = await submit(page, page.getByRole('button', { name: 'Confirm' }));
  assert(res.status() === 200, `confirm: ${res.status()}`);
  const codes = await page.locator('#codes li').allTextContents();
  assert(codes.length === 10, `${codes.length} recovery codes shown`);
  assert(new Set(codes).size === 10, 'recovery codes repeat');
  assert((await page.textContent('main')).includes('will not be shown again'), 'no note that the codes are shown once');
  const link = page.getByRole('link', { name: 'Download the codes' });
  assert((await link.getAttribute('href')).startsWith('data:text/plain'), 'download link is not a data:text/plain URL');
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  const saved = readFileSync(await download.path(), 'utf8');
  assert(codes.every((c) => saved.includes(c)), `downloaded file lacks codes: ${saved}`);
  log(`downloaded ${download.suggestedFilename()}`);
  await screenshot(page, 'self-codes');

  // Back to the status: on, 10 codes left, the codes are not shown again.
  res = await submit(page, page.getByRole('link', { name: /continue/ }));
  assert((await text(page, '#status')).includes('is on'), `status: ${await text(page, '#status')}`);
  assert((await text(page, '#remaining')).includes('10'), `remaining: ${await text(page, '#remaining')}`);
  assert(!(await page.content()).includes(codes[0]), 'recovery codes shown again');
  await screenshot(page, 'self-status-on');

  // Sign out and in again: now the password is followed by a code; a
  // recovery code works there and is used up.
  await submit(page, page.getByRole('button', { name: 'Sign out' }));
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  res = await submit(page, page.getByRole('button', { name: 'Sign in' }));
  assert(res.status() === 200, `sign-in with 2FA: ${res.status()}`);
  assert((await page.locator('#status').count()) === 0, 'status shown before the second factor');
  const step2 = page.getByLabel('Authentication code');
  assert((await step2.getAttribute('autocomplete')) === 'one-time-code', 'code field autocomplete');
  await screenshot(page, 'self-code');
  await step2.fill(codes[0]);
  res = await submit(page, page.getByRole('button', { name: 'Continue' }));
  assert(res.status() === 200, `second factor: ${res.status()}`);
  assert((await text(page, '#remaining')).includes('9'), `remaining after a recovery code: ${await text(page, '#remaining')}`);

  // Regenerate with the next step's code (the gateway accepts ±1 step, each once).
  await page.getByLabel('Authentication code').fill(totp(secret, now + 30));
  res = await submit(page, page.getByRole('button', { name: 'Make new recovery codes' }));
  assert(res.status() === 200, `regenerate: ${res.status()}`);
  const fresh = await page.locator('#codes li').allTextContents();
  assert(fresh.length === 10, `${fresh.length} new codes`);
  assert(fresh.every((c) => !codes.includes(c)), 'new codes repeat old ones');
  await submit(page, page.getByRole('link', { name: /continue/ }));

  // A replayed code is refused.
  await page.getByLabel('Authentication code').fill(totp(secret, now + 30));
  res = await submit(page, page.getByRole('button', { name: 'Make new recovery codes' }));
  assert(res.status() === 403, `replayed code: ${res.status()}`);
  assert((await text(page, '.error')).includes('not valid'), 'no error for a replayed code');

  // Disable: password and a recovery code.
  await page.getByLabel('Password').fill(password);
  await page.getByLabel('Authentication or recovery code').fill(fresh[0]);
  res = await submit(page, page.getByRole('button', { name: 'Turn off' }));
  assert(res.status() === 200, `disable: ${res.status()}`);
  assert((await text(page, '.ok')).includes('now off'), 'no confirmation of disabling');
  assert((await text(page, '#status')).includes('is off'), `status: ${await text(page, '#status')}`);

  // Sign out: back to the sign-in form; the page is signed out on reload.
  await submit(page, page.getByRole('button', { name: 'Sign out' }));
  assert(await page.getByLabel('Username').isVisible(), 'no sign-in form after signing out');
  await page.reload();
  assert((await page.locator('#status').count()) === 0, 'status shown after signing out');

  assert(foreign.length === 0, `requests to other origins: ${foreign.join(', ')}`);
  assert(violations.length === 0, `CSP violations: ${violations.join(' | ')}`);
  rmSync(work, { recursive: true, force: true });
});
