// xsign.mjs: the m.oauth stage's approval page (MSC4312) in headless
// Chromium. The Go test (TestBrowserOAuthStage, gateway/oauthstage_e2e_test.go)
// has a client with an OAuth token start a cross-signing reset and passes
// the stage's URL (XSIGN_URL, on ISSUER), the user's USERNAME and PASSWORD
// and two codes (CODE_SIGNIN, CODE_APPROVE). The page opens at that URL,
// signs in (password, code), lands on the approval view, refuses an
// approval without a code field filled (the browser's required check) and
// approves with the password and the second code. The Go test then retries
// the upload, which completes.
import { assert, env, foreignRequests, log, main, newPhonePage, routeIssuer, screenshot } from './lib.mjs';

const issuer = env('ISSUER');

await main(async (browser) => {
  const { context, page } = await newPhonePage(browser);
  const foreign = foreignRequests(context, [issuer]);
  await routeIssuer(context, issuer, env('GATEWAY_URL'));

  let res = await page.goto(env('XSIGN_URL'));
  assert(res.status() === 200, `GET ${env('XSIGN_URL')}: ${res.status()}`);
  await page.getByLabel('Username').fill(env('USERNAME'));
  await page.getByLabel('Password').fill(env('PASSWORD'));
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign in' }).click()]);
  await page.getByLabel('Authentication code').fill(env('CODE_SIGNIN'));
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Continue' }).click()]);

  await page.locator('#view-xsign').waitFor();
  assert(page.url().includes('action=org.matrix.cross_signing_reset'), `landed on ${page.url()}`);
  await screenshot(page, 'xsign-approve');
  const allow = page.getByRole('button', { name: 'Allow the reset' });
  await page.getByLabel('Password').fill(env('PASSWORD'));
  // Without a code the form does not even submit.
  await allow.click();
  assert(await page.locator('#view-xsign').isVisible(), 'the form went without a code');
  await page.getByLabel('Authentication or recovery code').fill(env('CODE_APPROVE'));
  await Promise.all([page.waitForNavigation(), allow.click()]);
  const done = (await page.locator('#done').textContent()).trim();
  assert(done.startsWith('Reset allowed'), `after approving: ${done}`);
  assert(foreign.length === 0, `requests to other origins: ${foreign}`);
  log('cross-signing reset approved in the browser');
});
