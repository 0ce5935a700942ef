// The PBX web console: plain ES modules (this one and `api.js`, the API client
// generated from the OpenAPI document), no dependencies, no build step.
//
// Every value from the API reaches the page through text nodes (the `el`
// helper below), never as markup. The session is a cookie the script cannot
// read; requests that change something carry the CSRF value the login set.

import * as api from "./api.js";
import { ApiError } from "./api.js";
import { Phone } from "./phone.js";

const API = "/api/v1";

// ---- small DOM helpers --------------------------------------------------

/** An element with attributes (`on*` keys are listeners) and children
 *  (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = String(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined));
  main.focus();
}

function status(text) {
  document.getElementById("status").textContent = text;
}

function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "";
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));
}

// ---- the API ------------------------------------------------------------
//
// Every call goes through `api.js`, the client generated from the OpenAPI
// document: one function per operation (`api.listExtensions({ tenant })`),
// throwing an `ApiError` (status, code, message) on a non-2xx answer.

// ---- session ------------------------------------------------------------

let me = null;

async function loadSession() {
  try {
    me = await api.getSession();
  } catch {
    me = null;
  }
  renderChrome();
}

function renderChrome() {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  const links = [];
  if (me && me.role === "provider-admin") {
    links.push(["#/overview", "Overview"], ["#/tenants", "Tenants"], ["#/approvals", "Approvals"], ["#/alerts", "Alerts"],
      ["#/bans", "Bans"], ["#/policies", "Policies"], ["#/audit", "Audit"]);
  } else if (me && me.role === "user") {
    const t = `#/t/${me.tenant}`;
    links.push([`${t}/phone`, "Phone"]);
  } else if (me && me.tenant !== null) {
    const t = `#/t/${me.tenant}`;
    links.push([`${t}/phone`, "Phone"], [`${t}/overview`, "Overview"], [`${t}/extensions`, "Extensions"], [`${t}/groups`, "Ring groups"], [`${t}/trunks`, "Trunks"],
      [`${t}/plugins`, "Dial plan"], [`${t}/hours`, "Hours"], [`${t}/forwarding`, "Forwarding"],
      [`${t}/calls`, "Live calls"], [`${t}/cdrs`, "Call records"], [`${t}/media`, "Voicemail"],
      [`${t}/alerts`, "Alerts"], ["#/audit", "Audit"]);
  }
  nav.replaceChildren(...links.map(([href, label]) =>
    el("a", { href, "aria-current": location.hash.startsWith(href) ? "page" : null }, label)));
  who.replaceChildren();
  if (me) {
    who.append(`${me.username} (${me.role}) `,
      el("button", { class: "secondary", type: "button", onclick: logout }, "Log out"));
  }
}

/** Where a principal lands: the provider on tenants, a tenant's admin on
 *  its extensions, a user on their phone. */
function home() {
  if (!me || me.role === "provider-admin") return "#/tenants";
  return me.role === "user" ? `#/t/${me.tenant}/phone` : `#/t/${me.tenant}/extensions`;
}

async function logout() {
  try { await api.logout(); } catch { /* the session may be gone already */ }
  me = null;
  location.hash = "#/login";
}

// ---- pictures -----------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

/** Stacked bars per bucket: `buckets` are [label, [value per series]]. */
function barChart(caption, buckets, series) {
  const width = 720, height = 180, pad = 28;
  const max = Math.max(1, ...buckets.map(([, v]) => v.reduce((a, b) => a + b, 0)));
  const bw = (width - pad) / Math.max(1, buckets.length);
  const colours = ["#1f5fbf", "#d9822b", "#a4262c"];
  const bars = buckets.flatMap(([label, values], i) => {
    let y = height - pad;
    return values.map((v, j) => {
      const h = (v / max) * (height - 2 * pad);
      y -= h;
      return svgEl("rect", { x: pad + i * bw + 1, y, width: Math.max(1, bw - 2), height: h, fill: colours[j] },
        svgEl("title", {}, `${label}: ${series[j]} ${v}`));
    });
  });
  const ticks = buckets.map(([label], i) => (i % Math.ceil(buckets.length / 8) === 0
    ? svgEl("text", { x: pad + i * bw, y: height - 8, "font-size": 11, fill: "#5b6475" }, label) : null)).filter(Boolean);
  const total = buckets.reduce((a, [, v]) => a + v.reduce((x, y) => x + y, 0), 0);
  const summary = `${caption}: ${total} in all, at most ${max} in one bucket`;
  return el("figure", {},
    svgEl("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", "aria-label": summary },
      svgEl("text", { x: 0, y: 14, "font-size": 11, fill: "#5b6475" }, String(max)),
      svgEl("line", { x1: pad, y1: height - pad, x2: width, y2: height - pad, stroke: "#d8dce4" }),
      bars, ticks),
    el("figcaption", {}, caption, " — ", series.map((name, j) => el("span", { class: `key key${j}` }, name)), "."));
}

/** A bar filled to `value` of `cap` (no cap: unlimited). */
function gauge(label, value, cap, unit = "") {
  const ratio = cap ? Math.min(1, value / cap) : 0;
  const text = cap ? `${label}: ${value}${unit} of ${cap}${unit}` : `${label}: ${value}${unit} (no limit)`;
  return el("figure", {},
    svgEl("svg", { viewBox: "0 0 300 18", width: 300, height: 18, role: "img", "aria-label": text },
      svgEl("rect", { x: 0, y: 0, width: 300, height: 18, fill: "#e8ebf0" }),
      svgEl("rect", { x: 0, y: 0, width: 300 * ratio, height: 18, fill: ratio >= 0.9 ? "#a4262c" : "#1f5fbf" })),
    el("figcaption", {}, text));
}

/** Hourly buckets over the last 24 h: [label, start ms]. */
function lastDayHours() {
  const hour = 3_600_000;
  const end = Math.ceil(Date.now() / hour) * hour;
  return Array.from({ length: 24 }, (_, i) => {
    const start = end - (24 - i) * hour;
    return [new Date(start).toISOString().slice(11, 13) + "h", start];
  });
}

function bucketed(items, at, classify, nSeries) {
  const hours = lastDayHours();
  return hours.map(([label, start]) => {
    const values = new Array(nSeries).fill(0);
    for (const item of items) {
      const t = at(item);
      if (t >= start && t < start + 3_600_000) values[classify(item)] += 1;
    }
    return [label, values];
  });
}

async function overviewView(tenant) {
  const since = Date.now() - 24 * 3_600_000;
  const [usage, cdrs] = await Promise.all([
    api.getTenantUsage({ tenant }),
    api.listCdrs({ tenant, since_ms: since, limit: 1000 }),
  ]);
  const live = el("div");
  const samples = [];
  const draw = (u) => {
    samples.push(u.concurrent_calls);
    if (samples.length > 60) samples.shift();
    live.replaceChildren(
      gauge("Calls in progress", u.concurrent_calls, u.max_concurrent),
      gauge("Spend today", (u.spend_today_cents / 100).toFixed(2), u.daily_cap_cents === null ? null : (u.daily_cap_cents / 100).toFixed(2)),
      barChart("Concurrent calls, sampled every 5 s while this page is open",
        samples.map((n, i) => [`${i * 5}s`, [n]]), ["calls"]));
  };
  draw(usage);
  const timer = setInterval(async () => {
    if (!document.body.contains(live)) { clearInterval(timer); return; }
    try { draw(await api.getTenantUsage({ tenant })); } catch { clearInterval(timer); }
  }, 5000);
  const perHour = bucketed(cdrs, (c) => c.started_at_ms, (c) => (c.disposition === "answered" ? 0 : 1), 2);
  show(el("h1", {}, "Overview"), live,
    barChart("Calls per hour, last 24 hours (UTC)", perHour, ["answered", "not answered"]));
}

async function providerOverviewView() {
  const [alerts, audit] = await Promise.all([api.listAlerts(), api.listAudit({ limit: 1000 })]);
  const failures = audit.filter((e) => e.action === "login.failure");
  const banLike = (a) => /ban|scanner|auth/.test(a.message || "");
  show(el("h1", {}, "Overview"),
    barChart("Alerts per hour, last 24 hours (UTC)",
      bucketed(alerts, (a) => a.at_ms, (a) => (a.severity === "critical" ? 2 : banLike(a) ? 1 : 0), 3),
      ["other", "bans and scanners", "critical"]),
    barChart("Failed admin logins per hour", bucketed(failures, (e) => e.at_ms, () => 0, 1), ["failed logins"]));
}

// ---- views --------------------------------------------------------------

function loginView() {
  const error = el("p", { class: "error", role: "alert" });
  const totp = el("label", { hidden: true }, "Code from your authenticator",
    el("input", { name: "totp", inputmode: "numeric", autocomplete: "one-time-code" }));
  const form = el("form", { "aria-label": "Log in" },
    el("label", {}, "User name", el("input", { name: "username", autocomplete: "username", required: true })),
    el("label", {}, "Password", el("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    totp,
    el("button", { type: "submit" }, "Log in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const body = { username: f.get("username"), password: f.get("password"), cookie: true };
    if (f.get("totp")) body.totp = f.get("totp");
    try {
      const answer = await api.login(body);
      await loadSession();
      if (answer.totp_enrollment_required) location.hash = "#/enroll";
      else if (answer.password_change_required) location.hash = "#/password";
      else location.hash = home();
    } catch (err) {
      if (err.code === "totp_required") {
        totp.hidden = false;
        totp.querySelector("input").focus();
        error.textContent = "Enter the code from your authenticator.";
      } else {
        error.textContent = err.message;
      }
    }
  });
  show(el("h1", {}, "Log in"), form, error);
}

async function enrollView() {
  const secret = await api.enrollTotp();
  const error = el("p", { class: "error", role: "alert" });
  const form = el("form", { "aria-label": "Confirm the authenticator" },
    el("label", {}, "Code", el("input", { name: "code", inputmode: "numeric", required: true })),
    el("button", { type: "submit" }, "Confirm"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api.confirmTotp({ code: new FormData(form).get("code") });
      await logout();
      status("The authenticator is confirmed: log in again with a code.");
    } catch (err) {
      error.textContent = err.message;
    }
  });
  show(el("h1", {}, "Set up your authenticator"),
    el("p", {}, "Add this account to an authenticator app (scan the code, or type the key), then enter the code it shows."),
    el("img", { src: secret.qr_code, alt: "QR code of the authenticator key", width: 200, height: 200 }),
    el("p", {}, "Key: ", el("span", { class: "secret", "data-testid": "totp-secret" }, secret.secret)),
    form, error);
}

/** Download links of an export route, as CSV and as JSON. */
function exportLinks(path) {
  return el("p", {}, "Export: ",
    el("a", { href: `${API}${path}?format=csv`, download: "" }, "CSV"), " · ",
    el("a", { href: `${API}${path}?format=json`, download: "" }, "JSON"));
}

async function tenantsView() {
  const tenants = await api.listTenants();
  const error = el("p", { class: "error", role: "alert" });
  const form = el("form", { "aria-label": "New tenant" },
    el("label", {}, "Name", el("input", { name: "name", required: true })),
    el("label", {}, "SIP domain", el("input", { name: "domain", required: true })),
    el("button", { type: "submit" }, "Create tenant"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    try {
      await api.createTenant({ name: f.get("name"), domain: f.get("domain") });
      await route();
      status(`Tenant ${f.get("name")} created.`);
    } catch (err) {
      error.textContent = err.message;
    }
  });
  const rows = tenants.map((t) => [
    el("a", { href: `#/t/${t.id}/extensions` }, t.name),
    (t.domains || []).join(", "),
    t.status,
    t.media_encryption || "",
    el("a", { href: `#/tenants/${t.id}` }, "Settings"),
    el("button", {
      type: "button", class: "secondary",
      onclick: async () => {
        try {
          await (t.status === "suspended" ? api.resumeTenant : api.suspendTenant)({ tenant: t.id });
          route();
        } catch (err) { error.textContent = err.message; }
      },
    }, t.status === "suspended" ? "Resume" : "Suspend"),
  ]);
  show(el("h1", {}, "Tenants"), form, error, table(["Name", "Domains", "Status", "Media encryption", "", ""], rows));
}

/** A tenant's limits, as `PUT /tenants/{tenant}/limits` takes them: field,
 *  label. An empty field is the host's default. */
const LIMITS = [
  ["max_concurrent", "Calls at once"],
  ["max_concurrent_extension", "Calls at once per extension"],
  ["max_calls_per_second", "New calls per second"],
  ["daily_cap_cents", "Daily spend cap (cents)"],
  ["media_storage_bytes", "Prompt and voicemail storage (bytes)"],
  ["max_media_sessions", "Media sessions at once"],
  ["recording_minutes", "Recorded minutes kept"],
];

const MEDIA_ENCRYPTION = [
  ["required", "Required: SRTP on both legs, plaintext refused"],
  ["optional", "Optional: SRTP where a leg offers it over TLS"],
  ["disabled", "Disabled: never SRTP"],
];

/** The provider's settings of one tenant: its limits and media encryption. */
async function tenantSettingsView(tenant) {
  if (!me || me.role !== "provider-admin") { notFound(); return; }
  const [t, limits] = await Promise.all([api.getTenant({ tenant }), api.getTenantLimits({ tenant })]);
  const error = el("p", { class: "error", role: "alert" });
  const limitsForm = actionForm("Limits",
    LIMITS.map(([name, label]) => [name, label, { type: "number", min: 0, step: 1, value: limits[name] ?? "", placeholder: "default" }]),
    "Save limits", async (v) => {
      // The route replaces every limit: an empty field goes as null (the default).
      const body = Object.fromEntries(LIMITS.map(([name]) => [name, v[name] === "" ? null : Number(v[name])]));
      await api.setTenantLimits({ tenant }, body);
      return "Limits saved.";
    }, error);
  const current = t.media_encryption || "optional";
  const media = el("form", { "aria-label": "SRTP policy" },
    el("label", {}, "Media encryption",
      el("select", { name: "policy" }, MEDIA_ENCRYPTION.map(([value, label]) =>
        el("option", { value, selected: value === current }, label)))),
    el("button", { type: "submit" }, "Set media encryption"));
  media.addEventListener("submit", async (e) => {
    e.preventDefault();
    const policy = new FormData(media).get("policy");
    try {
      await api.setMediaEncryption({ tenant }, { policy });
      await route();
      status(`Media encryption: ${policy}.`);
    } catch (err) { error.textContent = err.message; }
  });
  show(el("h1", {}, "Settings of ", t.name),
    el("p", {}, el("a", { href: "#/tenants" }, "All tenants"), " · ",
      el("a", { href: `#/t/${t.id}/extensions` }, "Its extensions")),
    error,
    el("h2", {}, "Limits"),
    el("p", {}, "Leave a field empty for the host's default."),
    limitsForm,
    el("h2", {}, "Media encryption"),
    media);
}

async function approvalsView() {
  const list = await api.listApprovals();
  const error = el("p", { class: "error", role: "alert" });
  const decide = (a, verb) => async () => {
    try {
      await (verb === "grant" ? api.grantApproval : api.denyApproval)({ id: a.id });
      await route();
      status(`Approval ${a.id} ${verb === "grant" ? "granted" : "denied"}.`);
    } catch (err) { error.textContent = err.message; }
  };
  const rows = list.map((a) => [
    String(a.tenant), a.kind, a.target, a.sample_number || "", a.status, when(a.requested_ms),
    a.status === "pending"
      ? el("span", {},
        el("button", { type: "button", onclick: decide(a, "grant") }, "Grant"), " ",
        el("button", { type: "button", class: "secondary", onclick: decide(a, "deny") }, "Deny"))
      : (a.decided_by || ""),
  ]);
  show(el("h1", {}, "Approvals"), error,
    list.length ? table(["Tenant", "Kind", "Destination", "Number", "Status", "Requested", ""], rows)
      : el("p", {}, "Nothing waits for approval."));
}

/** The live alert feed the alerts view has open; closed when the view goes. */
let alertFeed = null;

function closeAlertFeed() {
  if (alertFeed) alertFeed.close();
  alertFeed = null;
}

async function alertsView(tenant) {
  const list = await (tenant ? api.listTenantAlerts({ tenant }) : api.listAlerts());
  const row = (a) => el("tr", {}, [when(a.at_ms || a.created_ms), a.severity, a.event, a.message]
    .map((c) => el("td", {}, c)));
  const rows = el("tbody", {}, list.map(row));
  const shown = new Set(list.map((a) => a.id));
  const none = el("p", { hidden: list.length > 0 }, "No alerts.");
  const live = el("p", { class: "live", role: "status", "data-testid": "alerts-live" }, "Connecting to the live feed…");
  show(el("h1", {}, "Alerts"),
    tenant ? exportLinks(`/tenants/${tenant}/alerts/export`) : null,
    live, none,
    el("table", { hidden: list.length === 0 },
      el("thead", {}, el("tr", {}, ["When", "Severity", "Event", "Message"].map((h) => el("th", { scope: "col" }, h)))),
      rows));
  // New alerts come from the server as they are stored, newest on top; the
  // browser reconnects by itself, resuming after the last one received.
  const after = list.reduce((max, a) => Math.max(max, a.id || 0), 0);
  const feed = await api.streamAlerts({ tenant: tenant || undefined, after_id: after });
  closeAlertFeed();
  if (!document.body.contains(rows)) { feed.close(); return; } // the view is gone already
  alertFeed = feed;
  feed.addEventListener("open", () => { live.textContent = "Live: new alerts appear at the top."; });
  feed.addEventListener("error", () => {
    live.textContent = feed.readyState === EventSource.CLOSED ? "The live feed is unavailable; reload to retry."
      : "The live feed was interrupted; reconnecting…";
  });
  feed.addEventListener("alert", (e) => {
    let a;
    try { a = JSON.parse(e.data); } catch { return; }
    if (shown.has(a.id)) return;
    shown.add(a.id);
    rows.prepend(row(a));
    rows.parentNode.hidden = false;
    none.hidden = true;
  });
}

async function bansView() {
  const list = await api.listBans();
  const error = el("p", { class: "error", role: "alert" });
  const rows = list.map((b) => [
    el("span", { class: "mono" }, b.address || b.ip), b.reason, String(b.count ?? ""),
    when(b.until_ms),
    el("button", {
      type: "button", class: "secondary",
      onclick: async () => {
        try { await api.liftBan({ address: b.address || b.ip }); route(); } catch (err) { error.textContent = err.message; }
      },
    }, "Unban"),
  ]);
  show(el("h1", {}, "Bans"), error,
    list.length ? table(["Address", "Why", "Offences", "Until", ""], rows) : el("p", {}, "Nobody is banned."));
}

async function auditView() {
  const list = await api.listAudit({ limit: 200 });
  const result = el("p", { role: "status" });
  const verify = el("button", {
    type: "button",
    onclick: async () => {
      result.textContent = "Verifying…";
      try {
        const r = await api.verifyAudit();
        result.textContent = r.problems.length
          ? `Broken: ${r.problems.join("; ")}`
          : `Intact: ${r.entries} entries${r.checkpoints ? `, after ${r.checkpoints} purge checkpoints` : ""}.`;
      } catch (err) { result.textContent = err.message; }
    },
  }, "Verify the chain");
  const rows = list.map((e) => [String(e.id), when(e.at_ms), e.actor, e.action, e.tenant === null ? "" : String(e.tenant), el("span", { class: "mono" }, e.detail)]);
  const tenant = me && me.role !== "provider-admin" ? me.tenant : null;
  show(el("h1", {}, "Audit log"),
    tenant === null ? [verify, result] : exportLinks(`/tenants/${tenant}/audit/export`), table(["#", "When", "Who", "Action", "Tenant", "Detail"], rows));
}

async function extensionsView(tenant) {
  const list = await api.listExtensions({ tenant });
  const error = el("p", { class: "error", role: "alert" });
  const shown = el("div", { "aria-live": "polite" });
  const form = el("form", { "aria-label": "New extension" },
    el("label", {}, "Number", el("input", { name: "number", required: true, pattern: "[0-9A-Za-z._\\-]{1,32}" })),
    el("button", { type: "submit" }, "Add extension"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const number = new FormData(form).get("number");
    try {
      const made = await api.createExtension({ tenant }, { number });
      await renderExtensions();
      shown.replaceChildren(el("p", { class: "notice" }, `Extension ${made.number} added. Its SIP password, shown this once: `,
        el("span", { class: "secret", "data-testid": "secret" }, made.password)));
    } catch (err) { error.textContent = err.message; }
  });
  const holder = el("div");
  // A reset shows the new secret once, next to the form, and never again.
  const reveal = (text, secret) => shown.replaceChildren(el("p", { class: "notice" }, text,
    el("span", { class: "secret", "data-testid": "secret" }, secret)));
  const resets = (x) => el("span", {},
    el("button", { type: "button", class: "secondary", "aria-label": `Reset the SIP password of ${x.number}`, onclick: async () => {
      try {
        const made = await api.setExtensionPassword({ tenant, number: x.number }, {});
        reveal(`New SIP password of ${x.number}, shown this once: `, made.password);
      } catch (err) { error.textContent = err.message; }
    } }, "Reset password"), " ",
    el("button", { type: "button", class: "secondary", "aria-label": `Reset the voicemail PIN of ${x.number}`, onclick: async () => {
      try {
        const made = await api.setVoicemailPin({ tenant, mailbox: x.number }, {});
        reveal(`New voicemail PIN of ${x.number}, shown this once: `, made.pin);
      } catch (err) { error.textContent = err.message; }
    } }, "Reset voicemail PIN"));
  const rows = (xs) => table(["Number", "Enabled", ""], xs.map((x) => [x.number, x.enabled ? "yes" : "no", resets(x)]));
  async function renderExtensions() {
    holder.replaceChildren(rows(await api.listExtensions({ tenant })));
  }
  holder.append(rows(list));
  show(el("h1", {}, "Extensions"), form, error, shown, holder);
}

async function pluginsView(tenant) {
  const [versions, quarantine, log] = await Promise.all([
    api.listPlugins({ tenant }),
    api.listQuarantines({ tenant }),
    api.getPluginLog({ tenant }),
  ]);
  const error = el("p", { class: "error", role: "alert" });
  const upload = el("form", { "aria-label": "Upload a dial plan" },
    el("label", {}, "Dial plan component (.wasm)", el("input", { name: "file", type: "file", accept: ".wasm,application/wasm", required: true })),
    el("button", { type: "submit" }, "Upload and activate"));
  upload.addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = new FormData(upload).get("file");
    try {
      const v = await api.uploadPlugin({ tenant }, await file.arrayBuffer());
      await route();
      status(`Version ${v.version} is active.`);
    } catch (err) { error.textContent = err.message; }
  });
  const rollback = el("button", {
    type: "button", class: "secondary",
    onclick: async () => {
      try {
        const v = await api.rollbackPlugin({ tenant });
        await route();
        status(`Rolled back to version ${v.version}.`);
      } catch (err) { error.textContent = err.message; }
    },
  }, "Roll back");
  const rows = versions.map((v) => [String(v.version), v.active ? "active" : "", when(v.uploaded_at_ms), el("span", { class: "mono" }, v.hash.slice(0, 16))]);
  show(el("h1", {}, "Dial plan"), upload, rollback, error,
    versions.length ? table(["Version", "", "Uploaded", "Hash"], rows) : el("p", {}, "The shipped default dial plan runs."),
    el("h2", {}, "Quarantine"),
    quarantine.length ? table(["Plugin", "Reason", "Lifts in (s)"], quarantine.map((q) => [q.plugin, q.reason, String(q.lifts_in_s)]))
      : el("p", {}, "Nothing is quarantined."),
    el("h2", {}, "Plugin log"),
    exportLinks(`/tenants/${tenant}/plugins/log/export`),
    log.length ? table(["When", "Level", "Message"], log.map((l) => [when(l.at_ms), l.level, el("span", { class: "mono" }, l.message)]))
      : el("p", {}, "The plugins wrote nothing."));
}

async function cdrsView(tenant) {
  const list = await api.listCdrs({ tenant, limit: 100 });
  const rows = list.map((c) => [when(c.started_at_ms), c.caller, c.callee, c.disposition, String(c.sip_code),
    c.answered_at_ms ? `${Math.round((c.ended_at_ms - c.answered_at_ms) / 1000)} s` : ""]);
  show(el("h1", {}, "Call records"),
    exportLinks(`/tenants/${tenant}/cdrs/export`),
    list.length ? table(["Started", "From", "To", "Outcome", "SIP", "Talk"], rows) : el("p", {}, "No calls yet."));
}

/** A small form whose submit runs `action(values)` then redraws the view. */
function actionForm(label, fields, button, action, error) {
  const form = el("form", { "aria-label": label },
    fields.map(([name, text, attrs = {}]) => el("label", {}, text, el("input", { name, ...attrs }))),
    el("button", { type: "submit" }, button));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    try {
      const done = await action(values);
      await route();
      if (done) status(done);
    } catch (err) { error.textContent = err.message; }
  });
  return form;
}

function removeButton(label, action, error) {
  return el("button", {
    type: "button", class: "secondary",
    onclick: async () => {
      try { await action(); await route(); } catch (err) { error.textContent = err.message; }
    },
  }, label);
}

async function trunksView(tenant) {
  const [trunks, dids] = await Promise.all([
    api.listTrunks({ tenant }),
    api.listDids({ tenant }),
  ]);
  const error = el("p", { class: "error", role: "alert" });
  const add = actionForm("New trunk", [
    ["name", "Name", { required: true }],
    ["uri", "URI", { required: true, placeholder: "sip:carrier.example:5061;transport=tls" }],
    ["username", "User name"],
    ["password", "Password", { type: "password", autocomplete: "new-password" }],
  ], "Add trunk", async (v) => {
    const body = { name: v.name, uri: v.uri };
    if (v.username) body.username = v.username;
    if (v.password) body.password = v.password;
    await api.addTrunk({ tenant }, body);
    return `Trunk ${v.name} added.`;
  }, error);
  show(el("h1", {}, "Trunks and numbers"), add, error,
    trunks.length ? table(["Name", "URI", "User name", ""], trunks.map((t) => [t.name, t.uri, t.username || "",
      removeButton("Remove", () => api.removeTrunk({ tenant, name: t.name }), error)]))
      : el("p", {}, "No trunks."),
    el("h2", {}, "Numbers (DIDs)"),
    dids.length ? table(["Number"], dids.map((d) => [d.number])) : el("p", {}, "No numbers: the provider assigns them."));
}

async function ringGroupsView(tenant) {
  const items = (await api.listStorage({ tenant })).filter((i) => i.key.startsWith("ring-group:"));
  const error = el("p", { class: "error", role: "alert" });
  const add = actionForm("Ring group", [
    ["name", "Group", { required: true, pattern: "[A-Za-z0-9._\\-]{1,48}" }],
    ["members", "Extensions (comma-separated)", { required: true }],
  ], "Save group", async (v) => {
    const members = v.members.split(",").map((m) => m.trim()).filter(Boolean).join(",");
    await api.setStorageKey({ tenant, key: `ring-group:${v.name}` }, { value: members });
    return `Ring group ${v.name} saved.`;
  }, error);
  show(el("h1", {}, "Ring groups"),
    el("p", {}, "A ring group's extensions ring together, and pick up each other's calls with *8."),
    add, error,
    items.length ? table(["Group", "Extensions", ""], items.map((i) => [i.key.slice("ring-group:".length), i.value || "",
      removeButton("Remove", () => api.deleteStorageKey({ tenant, key: i.key }), error)]))
      : el("p", {}, "No ring groups."));
}

async function callsView(tenant) {
  const calls = await api.listCalls({ tenant });
  const error = el("p", { class: "error", role: "alert" });
  show(el("h1", {}, "Live calls"), error,
    el("button", { type: "button", class: "secondary", onclick: () => route() }, "Refresh"),
    calls.length ? table(["From", "To", "Started", "Answered", ""], calls.map((c) => [c.caller, c.callee, when(c.started_at_ms),
      when(c.answered_at_ms), removeButton("Hang up", () => api.hangUpCall({ tenant, call_id: c.call_id }), error)]))
      : el("p", {}, "No calls right now."));
}

async function forwardingView(tenant) {
  const extensions = await api.listExtensions({ tenant });
  const error = el("p", { class: "error", role: "alert" });
  const rows = await Promise.all(extensions.map(async (x) => {
    const f = await api.getForwarding({ tenant, number: x.number });
    return [x.number, f.always || "", f.busy || "", f.no_answer ? `${f.no_answer} after ${f.no_answer_secs} s` : "", f.dnd ? "on" : "off"];
  }));
  const set = actionForm("Forwarding", [
    ["number", "Extension", { required: true }],
    ["always", "Always to"],
    ["busy", "When busy to"],
    ["no_answer", "No answer to"],
    ["no_answer_secs", "After (s)", { type: "number", min: 5, max: 120, value: 20 }],
  ], "Set forwarding", async (v) => {
    const body = { always: v.always || null, busy: v.busy || null, no_answer: v.no_answer || null,
      no_answer_secs: Number(v.no_answer_secs || 20), dnd: false };
    await api.setForwarding({ tenant, number: v.number }, body);
    return `Forwarding of ${v.number} saved.`;
  }, error);
  show(el("h1", {}, "Forwarding"), set, error,
    table(["Extension", "Always", "Busy", "No answer", "Do not disturb"], rows));
}

async function hoursView(tenant) {
  const cal = await api.getTenantCalendar({ tenant });
  const error = el("p", { class: "error", role: "alert" });
  const add = actionForm("New holiday", [
    ["date", "Date", { type: "date", required: true }],
    ["name", "Holiday", { required: true }],
  ], "Add holiday", async (v) => {
    const holidays = [...cal.holidays.filter((h) => h.date !== v.date), { date: v.date, name: v.name }];
    await api.setTenantCalendar({ tenant }, { time_zone: cal.time_zone, holidays });
    return `Holiday ${v.date} added.`;
  }, error);
  show(el("h1", {}, "Business hours"),
    el("p", {}, `Time zone: ${cal.time_zone}. Opening hours are the dial plan's; the holidays below close the business all day.`),
    add, error,
    cal.holidays.length ? table(["Date", "Holiday", ""], cal.holidays.map((h) => [h.date, h.name,
      removeButton("Remove", () => api.setTenantCalendar({ tenant }, { time_zone: cal.time_zone, holidays: cal.holidays.filter((o) => o.date !== h.date) }), error)]))
      : el("p", {}, "No holidays."));
}

async function mediaView(tenant) {
  const [recordings, extensions] = await Promise.all([
    api.listRecordings({ tenant }),
    api.listExtensions({ tenant }),
  ]);
  const error = el("p", { class: "error", role: "alert" });
  const player = (href) => el("span", {},
    el("audio", { controls: true, preload: "none", src: href }), " ",
    el("a", { href, download: "" }, "Download"));
  const mailboxes = await Promise.all(extensions.map(async (x) => {
    try { return [x.number, await api.listVoicemailMessages({ tenant, mailbox: x.number })]; } catch { return [x.number, []]; }
  }));
  const messages = mailboxes.flatMap(([box, list]) => list.map((m) => [box, m]));
  show(el("h1", {}, "Voicemail and recordings"), error,
    el("h2", {}, "Voicemail"),
    messages.length ? table(["Mailbox", "From", "Left", "Length", "", ""], messages.map(([box, m]) => {
      const href = `${API}/tenants/${tenant}/voicemail/${encodeURIComponent(box)}/messages/${encodeURIComponent(m.id)}`;
      return [box, m.caller, when(m.created_at_ms), `${Math.round(m.duration_ms / 1000)} s`, player(href),
        removeButton("Delete", () => api.deleteVoicemailMessage({ tenant, mailbox: box, id: m.id }), error)];
    })) : el("p", {}, "No messages."),
    el("h2", {}, "Call recordings"),
    recordings.length ? table(["From", "To", "Recorded", "Length", "", ""], recordings.map((r) => {
      const href = `${API}/tenants/${tenant}/recordings/${encodeURIComponent(r.id)}`;
      return [r.caller, r.callee, when(r.created_at_ms), `${Math.round(r.duration_ms / 1000)} s`, player(href),
        removeButton("Delete", () => api.deleteRecording({ tenant, id: r.id }), error)];
    })) : el("p", {}, "No recordings."));
}

async function policiesView() {
  const list = await api.listPolicies();
  const error = el("p", { class: "error", role: "alert" });
  const upload = el("form", { "aria-label": "Install a policy" },
    el("label", {}, "Name", el("input", { name: "name", required: true })),
    el("label", {}, "Policy component (.wasm)", el("input", { name: "file", type: "file", accept: ".wasm,application/wasm", required: true })),
    el("button", { type: "submit" }, "Install"));
  upload.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(upload);
    try {
      await api.installPolicy({ name: f.get("name") }, await f.get("file").arrayBuffer());
      await route();
      status(`Policy ${f.get("name")} installed.`);
    } catch (err) { error.textContent = err.message; }
  });
  show(el("h1", {}, "Provider policies"),
    el("p", {}, "Policies run for every tenant's calls (or one tenant's); any deny wins, and no tenant can change them."),
    upload, error,
    table(["Name", "Tenant", "Hash", ""], list.map((p) => [p.name, p.tenant === null || p.tenant === undefined ? "all" : String(p.tenant),
      el("span", { class: "mono" }, (p.hash || "").slice(0, 16)),
      el("span", {},
        p.can_roll_back ? el("button", { type: "button", class: "secondary", "aria-label": `Roll back ${p.name}`, onclick: async () => {
          try {
            const back = await api.rollbackPolicy({ name: p.name });
            await route();
            status(`Policy ${back.name} rolled back to ${back.hash.slice(0, 16)}.`);
          } catch (err) { error.textContent = err.message; }
        } }, "Roll back") : null, " ",
        removeButton("Remove", () => api.removePolicy({ name: p.name }), error))])));
}

// ---- the browser phone ----------------------------------------------------
//
// One phone per page, kept across views so a call goes on while the user
// looks elsewhere; the view shows its state and drives it.

let phone = null;
const phoneAudio = el("audio", { autoplay: true, "aria-label": "Call audio" });
let phoneState = { state: "disconnected" };
let phoneRender = null;
let phoneStats = null;

const PHONE_TEXT = {
  disconnected: () => "Not connected.",
  registered: (d) => `Ready: extension ${d.number} is registered.`,
  unregistered: (d) => `Not registered${d.reason ? `: ${d.reason}` : "."}`,
  calling: (d) => `Calling ${d.peer}…`,
  ringing: (d) => `Ringing at ${d.peer}…`,
  incoming: (d) => `Incoming call from ${d.peer}.`,
  "in-call": (d) => `In a call with ${d.peer}.`,
  ended: (d) => `Call ended (${d.reason}).`,
};

function onPhoneState(e) {
  phoneState = e.detail;
  clearInterval(phoneStats);
  if (phoneState.state === "in-call") {
    phoneStats = setInterval(async () => {
      const p = phone && await phone.packets();
      const line = document.querySelector("[data-testid=phone-packets]");
      if (p && line) line.textContent = `Audio packets sent ${p.sent}, received ${p.received}.`;
    }, 1000);
  }
  if (phoneRender) phoneRender();
}

async function phoneView(tenant) {
  const error = el("p", { class: "error", role: "alert" });
  const state = el("p", { role: "status", "data-testid": "phone-state" });
  const packets = el("p", { class: "live", "data-testid": "phone-packets" });
  const connect = el("form", { "aria-label": "Connect the phone" },
    el("label", {}, "Extension", el("input", { name: "number", required: true, value: me.extension || "",
      readonly: me.role === "user" ? true : null, pattern: "[0-9A-Za-z._\\-]{1,32}" })),
    el("button", { type: "submit" }, "Connect"));
  connect.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const number = new FormData(connect).get("number");
    const candidate = new Phone(() => api.issueBrowserCredentials({ tenant, number }), phoneAudio);
    candidate.addEventListener("state", onPhoneState);
    // The phone is this page's from now: its events render with it.
    phone = candidate;
    try {
      await candidate.connect();
    } catch (err) {
      error.textContent = err.message;
      phone = null;
      phoneState = { state: "disconnected" };
      candidate.disconnect();
    }
    render();
  });
  const dial = el("form", { "aria-label": "Place a call" },
    el("label", {}, "Number to call", el("input", { name: "target", required: true, pattern: "[0-9A-Za-z.*#+_\\-]{1,32}" })),
    el("button", { type: "submit" }, "Call"));
  dial.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try { await phone.dial(new FormData(dial).get("target")); } catch (err) { error.textContent = err.message; }
  });
  const controls = el("div", { class: "controls" });
  function render() {
    const s = phoneState.state;
    state.textContent = (PHONE_TEXT[s] || (() => s))(phoneState);
    connect.hidden = phone !== null;
    dial.hidden = !phone || ["calling", "ringing", "incoming", "in-call"].includes(s);
    const buttons = [];
    if (s === "incoming") {
      buttons.push(el("button", { type: "button", onclick: () => phone.answer().catch((err) => { error.textContent = err.message; }) }, "Answer"),
        el("button", { type: "button", class: "secondary", onclick: () => phone.decline() }, "Decline"));
    } else if (["calling", "ringing", "in-call"].includes(s)) {
      buttons.push(el("button", { type: "button", onclick: () => phone.hangUp() }, "Hang up"));
    }
    if (phone && !["calling", "ringing", "incoming", "in-call"].includes(s)) {
      buttons.push(el("button", { type: "button", class: "secondary", onclick: async () => {
        const old = phone;
        phone = null;
        phoneState = { state: "disconnected" };
        await old.disconnect();
        render();
      } }, "Disconnect"));
    }
    controls.replaceChildren(...buttons);
    if (s !== "in-call") packets.textContent = "";
  }
  phoneRender = render;
  render();
  show(el("h1", {}, "Phone"),
    el("p", {}, "Calls from this browser tab, with its microphone and speaker. The phone signs in with credentials that last an hour, never with the extension's SIP password."),
    error, state, connect, dial, controls, packets, phoneAudio);
}

function notFound() {
  show(el("h1", {}, "Not found"), el("p", {}, "There is nothing here, or it is not yours to see."));
}

// ---- routing ------------------------------------------------------------

const routes = [
  [/^#\/login$/, loginView, false],
  [/^#\/enroll$/, enrollView, true],
  [/^#\/tenants$/, tenantsView, true],
  [/^#\/tenants\/(\d+)$/, tenantSettingsView, true],
  [/^#\/approvals$/, approvalsView, true],
  [/^#\/alerts$/, () => alertsView(null), true],
  [/^#\/bans$/, bansView, true],
  [/^#\/audit$/, auditView, true],
  [/^#\/t\/(\d+)\/extensions$/, extensionsView, true],
  [/^#\/t\/(\d+)\/plugins$/, pluginsView, true],
  [/^#\/t\/(\d+)\/cdrs$/, cdrsView, true],
  [/^#\/t\/(\d+)\/alerts$/, alertsView, true],
  [/^#\/t\/(\d+)\/trunks$/, trunksView, true],
  [/^#\/t\/(\d+)\/groups$/, ringGroupsView, true],
  [/^#\/t\/(\d+)\/calls$/, callsView, true],
  [/^#\/t\/(\d+)\/forwarding$/, forwardingView, true],
  [/^#\/t\/(\d+)\/hours$/, hoursView, true],
  [/^#\/t\/(\d+)\/media$/, mediaView, true],
  [/^#\/policies$/, policiesView, true],
  [/^#\/overview$/, providerOverviewView, true],
  [/^#\/t\/(\d+)\/overview$/, overviewView, true],
  [/^#\/t\/(\d+)\/phone$/, phoneView, true],
];

async function route() {
  const hash = location.hash || "#/";
  if (!me && hash !== "#/login") {
    await loadSession();
    if (!me) { location.hash = "#/login"; return; }
  }
  if (hash === "#/" || hash === "#") {
    location.hash = home();
    return;
  }
  renderChrome();
  status("");
  closeAlertFeed();
  phoneRender = null;
  for (const [pattern, view] of routes) {
    const m = hash.match(pattern);
    if (!m) continue;
    try {
      await view(...m.slice(1));
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 403)) notFound();
      else if (err instanceof ApiError && err.status === 401) { me = null; location.hash = "#/login"; }
      else show(el("h1", {}, "Something went wrong"), el("p", { class: "error" }, err.message));
    }
    return;
  }
  notFound();
}

window.addEventListener("hashchange", route);
route();
