// The browser phone in real Chromium: a user logs in to the console, connects
// the phone of their extension (short-lived credentials, SIP over secure
// WebSocket), calls a baresip phone and talks, hangs up; then baresip calls
// the browser, which answers. Chromium's fake devices give the microphone (a
// tone) and accept the media permission. Run by tests/tests/webrtc.rs, which
// starts the PBX and baresip and passes:
//
//   PBX_URL          the API listener (the console is at /)
//   PBX_USER         the user's "name:password" (their extension is 1000)
//   PBX_CALLEE       the extension baresip answers on (1001)
//   PBX_SCREENSHOTS  optional: a directory for screenshots
//
// When its first call is over it prints "ready for incoming call"; the runner
// then has baresip call extension 1000. It prints "webrtc checks passed" at
// the end and exits non-zero on the first failed check.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env("PBX_URL");
const [user, pass] = env("PBX_USER").split(/:(.*)/s);
const callee = env("PBX_CALLEE");
const shots = process.env.PBX_SCREENSHOTS;

const executablePath = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"].find((p) => fs.existsSync(p));
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
});
const problems = [];
// The PBX's WebSocket certificate is self-signed in this test.
const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: true });
await context.grantPermissions(["microphone"], { origin: url });
const page = await context.newPage();
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });

async function shot(name) {
  if (!shots) return;
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

const state = page.getByTestId("phone-state");

async function stateIs(text, timeout = 20000) {
  await page.waitForFunction(
    (wanted) => document.querySelector("[data-testid=phone-state]")?.textContent === wanted,
    text, { timeout },
  ).catch(async (e) => {
    throw new Error(`phone state is "${await state.textContent()}", not "${text}": ${e.message}`);
  });
}

/** Waits until the call has sent and received `n` audio packets (WebRTC stats). */
async function audioFlows(n) {
  const packets = page.getByTestId("phone-packets");
  const deadline = Date.now() + 20000;
  for (;;) {
    const m = /sent (\d+), received (\d+)/.exec((await packets.textContent()) || "");
    if (m && Number(m[1]) >= n && Number(m[2]) >= n) return [Number(m[1]), Number(m[2])];
    if (Date.now() > deadline) throw new Error(`audio did not flow both ways: "${await packets.textContent()}"`);
    await page.waitForTimeout(250);
  }
}

// ---- log in: a user lands on their phone --------------------------------
await page.goto(`${url}/#/login`);
await page.getByLabel("User name").fill(user);
await page.getByLabel("Password").fill(pass);
await page.getByRole("button", { name: "Log in" }).click();
await page.getByRole("heading", { name: "Phone" }).waitFor();
assert.equal(await page.getByLabel("Extension").inputValue(), "1000");
await page.getByRole("button", { name: "Connect", exact: true }).click();
await stateIs("Ready: extension 1000 is registered.");
assert.equal(await page.getByRole("button", { name: "Connect", exact: true }).isVisible(), false, "connected: no Connect button");
await shot("phone");

// ---- the browser calls baresip ----------------------------------------
await page.getByLabel("Number to call").fill(callee);
await page.getByRole("button", { name: "Call", exact: true }).click();
await stateIs(`In a call with ${callee}.`);
assert.equal(await page.getByRole("button", { name: "Call", exact: true }).isVisible(), false, "in a call: no Call button");
const [sent, received] = await audioFlows(100);
console.log(`browser call: ${sent} packets sent, ${received} received`);
await shot("phone-in-call");
await page.getByRole("button", { name: "Hang up" }).click();
await stateIs("Call ended (hung up).");

// ---- baresip calls the browser ------------------------------------------
console.log("ready for incoming call");
await stateIs(`Incoming call from ${callee}.`, 30000);
await page.getByRole("button", { name: "Answer" }).click();
await stateIs(`In a call with ${callee}.`);
const [sent2, received2] = await audioFlows(100);
console.log(`incoming call: ${sent2} packets sent, ${received2} received`);
await page.getByRole("button", { name: "Hang up" }).click();
await stateIs("Call ended (hung up).");

// The long-term SIP password never reached the page.
assert.equal(await page.evaluate(() => document.body.textContent.includes("webrtc.")), false);

await browser.close();
assert.deepEqual(problems, [], "the page logged no errors");
console.log("webrtc checks passed");
