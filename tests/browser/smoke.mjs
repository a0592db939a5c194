// smoke.mjs: the browser infrastructure works (Chromium starts, a page
// renders, totp() matches RFC 6238). Started by TestBrowserSmoke.
import { assert, main, newPhonePage, totp } from './lib.mjs';

// RFC 6238 appendix B, SHA-1, 8 digits, secret "12345678901234567890".
const rfcSecret = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
for (const [t, want] of [[59, '94287082'], [1111111109, '07081804'], [2000000000, '69279037']]) {
  const got = totp(rfcSecret, t, 8);
  assert(got === want, `totp(${t}) = ${got}, want ${want}`);
}

await main(async (browser) => {
  const { page } = await newPhonePage(browser);
  await page.setContent('<p id="x">hello</p>');
  const text = await page.textContent('#x');
  assert(text === 'hello', `page text ${text}`);
  if (process.env.SMOKE_URL) {
    const res = await page.goto(process.env.SMOKE_URL);
    assert(res && res.ok(), `GET ${process.env.SMOKE_URL}: ${res && res.status()}`);
  }
});
