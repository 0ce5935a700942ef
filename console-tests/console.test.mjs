// Browser tests of the web console: Playwright drives Debian's Chromium
// against a running PBX. Run by tests/tests/console.rs, which starts the PBX
// on the shipped defaults, provisions what the steps need and passes:
//
//   PBX_URL          the API listener (the console is at /)
//   PBX_ROOT         the provider admin's "user:password"
//   PBX_TENANT_ADMIN acme's admin "user:password"
//   PBX_ACME, PBX_BETA  tenant ids (beta is someone else's)
//   PBX_DIALPLAN     a dial plan component to upload
//   PBX_POLICY_A, PBX_POLICY_B  two different policy components
//   PBX_SCREENSHOTS  optional: a directory for screenshots of the main views
//
// When the alerts view is live it prints "ready for live alerts"; the runner
// then stores an alert of beta's and one of acme's whose message is LIVE_XSS.
//
// It exits non-zero on the first failed check.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env("PBX_URL");
const [rootUser, rootPass] = env("PBX_ROOT").split(/:(.*)/s);
const [adminUser, adminPass] = env("PBX_TENANT_ADMIN").split(/:(.*)/s);
const acme = env("PBX_ACME");
const beta = env("PBX_BETA");
const dialplan = env("PBX_DIALPLAN");
const policyA = env("PBX_POLICY_A");
const policyB = env("PBX_POLICY_B");
const shots = process.env.PBX_SCREENSHOTS;
const XSS = `<img src=x onerror="window.__xss=1">`;
const LIVE_XSS = `<img src=x onerror="window.__xss=2"> live`;

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) of a base32 secret at `step`. */
function totp(secretB32, step) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secretB32.replace(/=+$/, "").toUpperCase()) {
    bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(code).padStart(6, "0");
}

const executablePath = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"].find((p) => fs.existsSync(p));
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
const problems = [];

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("dialog", (d) => { problems.push(`a dialog opened: ${d.message()}`); d.dismiss(); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error" && !/status of (4\d\d)/.test(m.text())) problems.push(`console: ${m.text()}`); });
  return page;
}

async function shot(page, name) {
  if (!shots) return;
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

async function login(page, user, pass, code) {
  await page.goto(`${url}/#/login`);
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill(pass);
  await page.getByRole("button", { name: "Log in" }).click();
  if (code) {
    const field = page.getByLabel("Code from your authenticator");
    await field.waitFor();
    await field.fill(code);
    await page.getByRole("button", { name: "Log in" }).click();
  }
}

async function noXss(page) {
  assert.equal(await page.evaluate(() => window.__xss), undefined, "an injected handler ran");
}

// ---- 1. The provider: TOTP, a tenant, an extension, an approval ----------
{
  const page = await newPage();
  const started = Date.now();
  await page.goto(`${url}/`);
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  const timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    return Math.round(nav.domContentLoadedEventEnd);
  });
  console.log(`console page: DOMContentLoaded after ${timing} ms (${Date.now() - started} ms with the first view)`);

  await login(page, rootUser, rootPass);
  await page.getByRole("heading", { name: "Tenants" }).waitFor();
  // Enrol an authenticator, then log in with it.
  await page.goto(`${url}/#/enroll`);
  const secret = (await page.getByTestId("totp-secret").textContent()).trim();
  assert.match(secret, /^[A-Z2-7]+=*$/);
  assert.ok(await page.getByAltText("QR code of the authenticator key").isVisible());
  await shot(page, "totp-enrolment");
  const step = Math.floor(Date.now() / 30000);
  await page.getByLabel("Code", { exact: true }).fill(totp(secret, step));
  await page.getByRole("button", { name: "Confirm" }).click();
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  // The code of the next step (one step of skew is allowed): the confirmed
  // one may not be used twice.
  await login(page, rootUser, rootPass, totp(secret, step + 1));
  await page.getByRole("heading", { name: "Tenants" }).waitFor();

  // A tenant whose name is a markup payload: it shows as text.
  await page.getByLabel("Name", { exact: true }).fill(XSS);
  await page.getByLabel("SIP domain").fill("xss.example");
  await page.getByRole("button", { name: "Create tenant" }).click();
  const link = page.getByRole("link", { name: XSS, exact: true });
  await link.waitFor();
  assert.equal(await page.locator("main img").count(), 0, "the name became an element");
  await noXss(page);
  await shot(page, "tenants");

  // Its settings: a limit saved (the others left to the defaults), and the
  // media encryption policy, shown back in the tenants table.
  const row = page.getByRole("row").filter({ hasText: "xss.example" });
  await row.getByRole("link", { name: "Settings" }).click();
  await page.getByRole("heading", { name: `Settings of ${XSS}` }).waitFor();
  await noXss(page);
  await page.getByLabel("Calls at once", { exact: true }).fill("7");
  await page.getByRole("button", { name: "Save limits" }).click();
  await page.getByText("Limits saved.").waitFor();
  assert.equal(await page.getByLabel("Calls at once", { exact: true }).inputValue(), "7");
  assert.equal(await page.getByLabel("New calls per second").inputValue(), "");
  await page.getByRole("combobox", { name: /^Media encryption/ }).selectOption("required");
  await page.getByRole("button", { name: "Set media encryption" }).click();
  await page.getByText("Media encryption: required.").waitFor();
  await shot(page, "tenant-settings");
  await page.getByRole("link", { name: "All tenants" }).click();
  await row.getByRole("cell", { name: "required", exact: true }).waitFor();
  await link.click();
  await page.getByRole("heading", { name: "Extensions" }).waitFor();
  await page.getByLabel("Number").fill("100");
  await page.getByRole("button", { name: "Add extension" }).click();
  const password = (await page.getByTestId("secret").textContent()).trim();
  assert.ok(password.length >= 12, `the generated password is shown once: ${password}`);
  await page.getByRole("cell", { name: "100", exact: true }).waitFor();

  // The approval waiting for acme: granted.
  await page.getByRole("link", { name: "Approvals" }).click();
  await page.getByRole("heading", { name: "Approvals" }).waitFor();
  await shot(page, "approvals");
  await page.getByRole("button", { name: "Grant" }).first().click();
  await page.getByText(/^Approval \d+ granted\.$/).waitFor();
  await page.getByText("Nothing waits for approval.").waitFor();

  await page.getByRole("link", { name: "Overview" }).click();
  await page.getByRole("img", { name: /^Alerts per hour, last 24 hours/ }).waitFor();
  await shot(page, "provider-overview");

  await page.getByRole("link", { name: "Policies" }).click();
  await page.getByRole("heading", { name: "Provider policies" }).waitFor();
  // Two versions of a policy, then a rollback to the first.
  const trialRow = () => page.getByRole("row").filter({ hasText: "trial" });
  const hashCell = async () => (await trialRow().getByRole("cell").nth(2).textContent()).trim();
  const install = async (file) => {
    await page.getByLabel("Name", { exact: true }).fill("trial");
    await page.getByLabel("Policy component (.wasm)").setInputFiles(file);
    await page.getByRole("button", { name: "Install" }).click();
  };
  await install(policyA);
  await trialRow().waitFor();
  const first = await hashCell();
  await install(policyB);
  // The second version replaces the first, which is kept to roll back to.
  await page.getByRole("button", { name: "Roll back trial" }).waitFor();
  const second = await hashCell();
  assert.notEqual(first, second, "a new version was installed");
  await page.getByRole("button", { name: "Roll back trial" }).click();
  await page.getByText(`Policy trial rolled back to ${first}.`).waitFor();
  assert.equal(await hashCell(), first, "the rollback went back to the first version");
  await shot(page, "policies");

  // The audit log verifies.
  await page.getByRole("link", { name: "Audit" }).click();
  await page.getByRole("button", { name: "Verify the chain" }).click();
  await page.getByText(/^Intact: \d+ entries/).waitFor();
  await shot(page, "audit");

  // A change without the CSRF value is refused, even with the session cookie.
  const status = await page.evaluate(async () => {
    const r = await fetch("/api/v1/tenants", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: "forged", domain: "forged.example" }),
    });
    return r.status;
  });
  assert.equal(status, 403, "a request without the CSRF value");
  // The session cookie is out of the script's reach.
  assert.ok(!(await page.evaluate(() => document.cookie)).includes("pbx_session"));
  await page.context().close();
}

// ---- 2. A tenant admin: dial plan upload and rollback; another tenant ---
{
  const page = await newPage();
  await login(page, adminUser, adminPass);
  await page.getByRole("heading", { name: "Extensions" }).waitFor();
  // A password reset and a voicemail PIN reset show the new secret once.
  await page.getByRole("button", { name: "Reset the SIP password of 1000" }).click();
  await page.getByText(/^New SIP password of 1000, shown this once: \S{12,}$/).waitFor();
  await page.getByRole("button", { name: "Reset the voicemail PIN of 1000" }).click();
  await page.getByText(/^New voicemail PIN of 1000, shown this once: \d{6}$/).waitFor();
  await shot(page, "extensions");
  await page.goto(`${url}/#/t/${acme}/plugins`);
  await page.getByRole("heading", { name: "Dial plan" }).waitFor();
  for (const version of [1, 2]) {
    await page.getByLabel("Dial plan component (.wasm)").setInputFiles(dialplan);
    await page.getByRole("button", { name: "Upload and activate" }).click();
    await page.getByText(`Version ${version} is active.`).waitFor();
  }
  await page.getByRole("button", { name: "Roll back" }).click();
  await page.getByText("Rolled back to version 1.").waitFor();
  const active = page.getByRole("row").filter({ hasText: "active" });
  assert.equal((await active.first().locator("td").first().textContent()).trim(), "1");
  await shot(page, "dial-plan");

  // The other tenant views: ring groups, trunks, hours, forwarding, calls,
  // voicemail and recordings.
  await page.goto(`${url}/#/t/${acme}/groups`);
  await page.getByLabel("Group", { exact: true }).fill("sales");
  await page.getByLabel("Extensions (comma-separated)").fill("100, 101");
  await page.getByRole("button", { name: "Save group" }).click();
  await page.getByRole("cell", { name: "100,101", exact: true }).waitFor();
  await shot(page, "ring-groups");
  await page.goto(`${url}/#/t/${acme}/trunks`);
  await page.getByLabel("Name", { exact: true }).fill(XSS);
  await page.getByLabel("URI").fill("sip:carrier.example:5061;transport=tls");
  await page.getByRole("button", { name: "Add trunk" }).click();
  // A markup name is either refused with a reason or shown as text.
  await page.locator("p.error:not(:empty)").or(page.getByRole("cell", { name: XSS, exact: true })).first().waitFor();
  assert.equal(await page.locator("main img").count(), 0);
  await noXss(page);
  await page.getByLabel("Name", { exact: true }).fill("carrier");
  await page.getByRole("button", { name: "Add trunk" }).click();
  await page.getByRole("cell", { name: "carrier", exact: true }).waitFor();
  await page.goto(`${url}/#/t/${acme}/hours`);
  await page.getByLabel("Date").fill("2026-12-25");
  await page.getByLabel("Holiday", { exact: true }).fill("Christmas");
  await page.getByRole("button", { name: "Add holiday" }).click();
  await page.getByRole("cell", { name: "Christmas", exact: true }).waitFor();
  // The overview: calls in progress and spend against the limits in force.
  await page.goto(`${url}/#/t/${acme}/overview`);
  await page.getByRole("img", { name: /^Calls in progress: 0 of \d+$/ }).waitFor();
  await page.getByRole("img", { name: /^Spend today: 0\.00 of [\d.]+$/ }).waitFor();
  await page.getByRole("img", { name: /^Calls per hour, last 24 hours/ }).waitFor();
  await shot(page, "tenant-overview");
  for (const [view, heading] of [["forwarding", "Forwarding"], ["calls", "Live calls"],
    ["media", "Voicemail and recordings"], ["cdrs", "Call records"]]) {
    await page.goto(`${url}/#/t/${acme}/${view}`);
    await page.getByRole("heading", { name: heading, exact: true }).waitFor();
  }
  await shot(page, "call-records");

  // The alert whose message is a script shows as text.
  await page.goto(`${url}/#/t/${acme}/alerts`);
  await page.getByText("<script>window.__xss=1</script>", { exact: false }).first().waitFor();
  await noXss(page);
  // Alerts stored while the view is open appear on top, as text, and only
  // the tenant's own.
  await page.getByText("Live: new alerts appear at the top.").waitFor();
  console.log("ready for live alerts");
  await page.getByRole("cell", { name: LIVE_XSS, exact: true }).waitFor({ timeout: 15_000 });
  assert.equal((await page.locator("tbody tr").first().textContent()).includes(LIVE_XSS), true);
  assert.equal(await page.getByText("beta-live-alert").count(), 0);
  assert.equal(await page.locator("main img").count(), 0);
  await noXss(page);

  // The tenant's own records download, for its compliance audits.
  for (const view of ["alerts", "cdrs"]) {
    await page.goto(`${url}/#/t/${acme}/${view}`);
    const href = await page.getByRole("link", { name: "CSV", exact: true }).getAttribute("href");
    const got = await page.evaluate(async (h) => {
      const r = await fetch(h);
      return [r.status, r.headers.get("content-type")];
    }, href);
    assert.deepEqual([got[0], got[1].split(";")[0]], [200, "text/csv"], href);
  }
  await page.goto(`${url}/#/audit`);
  await page.getByRole("heading", { name: "Audit log" }).waitFor();
  await page.getByRole("link", { name: "JSON", exact: true }).waitFor();

  // Another tenant's pages are "not found", like pages that do not exist.
  for (const view of ["extensions", "plugins", "cdrs", "alerts"]) {
    await page.goto(`${url}/#/t/${beta}/${view}`);
    await page.getByRole("heading", { name: "Not found" }).waitFor();
  }
  await page.goto(`${url}/#/t/999999/extensions`);
  await page.getByRole("heading", { name: "Not found" }).waitFor();
  // Nor do the provider's views open for a tenant admin.
  await page.goto(`${url}/#/tenants`);
  await page.getByRole("heading", { name: "Not found" }).waitFor();
  await page.goto(`${url}/#/tenants/${acme}`);
  await page.getByRole("heading", { name: "Not found" }).waitFor();
  await page.context().close();
}

await browser.close();
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log("console checks passed");
