// approve.mjs: the m.oauth stage's approval of an operation other than the
// reset, and the device view's details, in headless Chromium. The Go test
// (TestBrowserOAuthApproval, gateway/oauthstage_ops_e2e_test.go) has a
// client with an OAuth token ask to sign out device DEVICE_ID and passes the
// stage's URL (APPROVE_URL, on ISSUER), the sentence the page must show
// (APPROVE_WHAT), the user's USERNAME and PASSWORD, the device's name
// (DEVICE_NAME) and two codes (CODE_SIGNIN, CODE_APPROVE). The page signs in,
// shows the device's details after the password, then shows what is asked
// and approves it with the password and the second code. The Go test then
// retries the request, which completes.
import { assert, env, foreignRequests, log, main, newPhonePage, routeIssuer, screenshot } from './lib.mjs';

const issuer = env('ISSUER');

await main(async (browser) => {
  const { context, page } = await newPhonePage(browser);
  const foreign = foreignRequests(context, [issuer]);
  await routeIssuer(context, issuer, env('GATEWAY_URL'));

  let res = await page.goto(env('APPROVE_URL'));
  assert(res.status() === 200, `GET ${env('APPROVE_URL')}: ${res.status()}`);
  await page.getByLabel('Username').fill(env('USERNAME'));
  await page.getByLabel('Password').fill(env('PASSWORD'));
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign in' }).click()]);
  await page.getByLabel('Authentication code').fill(env('CODE_SIGNIN'));
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Continue' }).click()]);
  await page.locator('#view-approve').waitFor();
  const what = (await page.locator('#approve-what').textContent()).trim();
  assert(what === env('APPROVE_WHAT'), `the page says it approves "${what}"`);
  await screenshot(page, 'approve-operation');

  // The device's details, after the password.
  res = await page.goto(`${issuer}/_matrix2fa/?action=org.matrix.device_view&device_id=${encodeURIComponent(env('DEVICE_ID'))}`);
  assert(res.status() === 200, `device view: ${res.status()}`);
  await page.locator('#details-password').fill(env('PASSWORD'));
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: "Show the device's details" }).click()]);
  await page.locator('#device-details').waitFor();
  const name = (await page.locator('#device-name').textContent()).trim();
  assert(name === env('DEVICE_NAME'), `device name: ${name}`);
  await screenshot(page, 'device-details');

  await page.goto(env('APPROVE_URL'));
  await page.locator('#view-approve').waitFor();
  const approve = page.getByRole('button', { name: 'Approve' });
  await page.getByLabel('Password').fill(env('PASSWORD'));
  // Without a code the form does not even submit.
  await approve.click();
  assert(await page.locator('#view-approve').isVisible(), 'the form went without a code');
  await page.getByLabel('Authentication or recovery code').fill(env('CODE_APPROVE'));
  await Promise.all([page.waitForNavigation(), approve.click()]);
  const done = (await page.locator('#done').textContent()).trim();
  assert(done.startsWith('Approved: ' + env('APPROVE_WHAT')), `after approving: ${done}`);
  assert(foreign.length === 0, `requests to other origins: ${foreign}`);
  log('operation approved in the browser');
});
