// presence-gateway dashboard: plain JS, no build step. Pages fetch the JSON API; charts are
// uPlot (served from /static, never a CDN). Times are shown in the store's own time zone.
"use strict";

const $ = (sel) => document.querySelector(sel);
const fmt = {
  int: (n) => (n == null ? "–" : Math.round(n).toLocaleString()),
  pct: (x) => (x == null ? "–" : (100 * x).toFixed(1) + " %"),
  dwell: (s) => (s == null ? "–" : s < 120 ? Math.round(s) + " s" : (s / 60).toFixed(1) + " min"),
  change: (x) => (x == null ? "–" : (x > 0 ? "+" : "") + (100 * x).toFixed(0) + " %"),
  time: (epoch, tz) => (epoch == null ? "–" : new Intl.DateTimeFormat(undefined, {
    dateStyle: "short", timeStyle: "medium", timeZone: tz || undefined }).format(new Date(epoch * 1000))),
};

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function rows(tbody, items, cells) {
  tbody.replaceChildren(...items.map((it) => {
    const tr = document.createElement("tr");
    for (const c of cells(it)) {
      const td = document.createElement("td");
      if (c instanceof Node) td.append(c); else td.textContent = c;
      tr.append(td);
    }
    return tr;
  }));
}

async function nav() {
  const me = await api("/api/me");
  const el = $("#nav");
  const links = [["/", "Stores"]];
  if (me.may.includes("campaigns")) links.push(["/campaigns", "Campaigns"]);
  if (me.may.includes("health")) links.push(["/health", "Gateways"]);
  for (const [href, text] of links) {
    const a = document.createElement("a"); a.href = href; a.textContent = text; el.append(a);
  }
  const form = document.createElement("form");
  form.method = "post"; form.action = "/logout"; form.className = "logout";
  const csrf = document.createElement("input");
  csrf.type = "hidden"; csrf.name = "csrf"; csrf.value = me.csrf;
  const who = document.createElement("span"); who.textContent = me.user + " (" + me.role + ")";
  const b = document.createElement("button"); b.textContent = "Log out";
  form.append(who, csrf, b); el.append(form);
  return me;
}

async function chainPage() {
  await nav();
  const stores = await api("/api/stores");
  rows($("#stores tbody"), stores, (s) => {
    const a = document.createElement("a");
    a.href = "/store/" + encodeURIComponent(s.store); a.textContent = s.store;
    return [a, fmt.int(s.visits_today), fmt.int(s.visits_same_weekday_last_week),
      fmt.change(s.change_vs_last_week), (s.present_now ?? 0).toFixed(1), fmt.pct(s.capture_rate),
      fmt.dwell(s.median_dwell_s), fmt.int(s.identified_visits), fmt.int(s.offers_fired),
      s.gateways_online + " / " + s.gateways];
  });
  document.body.dataset.ready = "1";
}

let plot = null;
function drawOccupancy(day) {
  const tz = day.timezone;
  const xs = day.present_people_est.map((p) => p[0]);
  const series = [xs, day.present_people_est.map((p) => p[1])];
  const opts = {
    width: Math.min(1100, document.body.clientWidth - 40), height: 260,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), tz),
    series: [{}, { label: "store", stroke: "#2563eb", width: 2, fill: "rgba(37,99,235,0.08)" }],
    axes: [{}, { label: "people (est.)" }],
  };
  const palette = ["#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2"];
  let i = 0;
  const zones = Object.entries(day.zones_people_est);
  for (const [zone, pts] of zones.length > 1 ? zones : []) {  // one zone is the store itself
    if (pts.length !== xs.length) continue;  // a zone series must share the store's minutes
    series.push(pts.map((p) => p[1]));
    opts.series.push({ label: "zone " + zone, stroke: palette[i++ % palette.length] });
  }
  $("#occupancy").replaceChildren();
  plot = new uPlot(opts, series, $("#occupancy"));
  $("#occupancy").dataset.points = String(xs.length);
}

function fillTotals(t) {
  $("#t-visits").textContent = fmt.int(t.visits);
  $("#t-passers").textContent = fmt.int(t.passers_by);
  $("#t-capture").textContent = fmt.pct(t.capture_rate);
  $("#t-dwell").textContent = fmt.dwell(t.median_dwell_s);
  $("#t-now").textContent = (t.present_now_people_est ?? 0).toFixed(1) +
    (t.present_now_interval ? " (" + t.present_now_interval.map((v) => (+v).toFixed(1)).join("–") + ")" : "");
  $("#t-linked").textContent = fmt.int(t.identified_visits);
  $("#t-offers").textContent = fmt.int(t.offers_fired);
}

async function storePage() {
  await nav();
  const store = decodeURIComponent(location.pathname.split("/").pop());
  const params = new URLSearchParams(location.search);
  $("#title").textContent = store;
  const day = await api("/api/stores/" + encodeURIComponent(store) + "/day" +
    (params.get("date") ? "?date=" + params.get("date") : ""));
  $("#day").value = day.date;
  $("#day").addEventListener("change", () => {
    location.search = "?date=" + $("#day").value;
  });
  fillTotals(day.totals);
  drawOccupancy(day);
  const h = day.per_hour;
  rows($("#hours tbody"), [...Array(24).keys()].filter((i) => h.entries[i] || h.exits[i] || h.passers_by[i]),
    (i) => [String(i).padStart(2, "0") + ":00", fmt.int(h.entries[i]), fmt.int(h.exits[i]), fmt.int(h.passers_by[i])]);
  rows($("#dwell tbody"), day.dwell_histogram, (b) => [b.label, fmt.int(b.visits)]);
  rows($("#paths tbody"), Object.entries(day.paths), ([p, n]) => [p, fmt.int(n)]);
  rows($("#offers tbody"), Object.entries(day.offers), ([o, n]) => [o, fmt.int(n)]);
  const q = "?store=" + encodeURIComponent(store) + "&date=" + day.date;
  $("#csv-hours").href = "/export/hours.csv" + q;
  $("#csv-dwell").href = "/export/dwell.csv" + q;
  const today = !params.get("date") || params.get("date") === day.date && day.live !== false;
  if (today && !params.get("date")) live(store, day);
  document.body.dataset.ready = "1";
}

function live(store, day) {
  const last = day.present_people_est.length ? day.present_people_est.at(-1)[0] : null;
  const after = last ? "?after=" + encodeURIComponent(new Date(last * 1000).toISOString().replace(/\.\d+Z$/, ".000Z")) : "";
  const es = new EventSource("/api/stores/" + encodeURIComponent(store) + "/live" + after);
  es.addEventListener("open", () => { $("#live").hidden = false; });
  es.addEventListener("footfall", (ev) => {
    const f = JSON.parse(ev.data);
    const t = Date.parse(f.time) / 1000;
    day.present_people_est.push([t, f.present_people_est]);
    day.totals.visits += f.entries || 0;
    day.totals.passers_by += f.passers_by || 0;
    day.totals.present_now_people_est = f.present_people_est;
    day.totals.present_now_interval = f.present_interval || null;
    fillTotals(day.totals);
    for (const pts of Object.values(day.zones_people_est)) pts.push([t, null]);
    drawOccupancy(day);
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  });
}

const WHY = {
  outside_dates: "outside its start/end dates", outside_days: "not on one of its days",
  outside_hours: "outside its hours (store time)", not_registered: "visitor not a registered customer",
  no_consent: "customer did not consent to offers", segment: "customer not in its segment",
  visits: "too few earlier visits", max_per_visit: "already fired in this visit (rule cap)",
  store_max_per_visit: "store cap per visit reached", cooldown: "cooldown since the last offer",
  per_customer_day: "daily cap per customer", per_customer_week: "weekly cap per customer",
  global_per_hour: "hourly cap of the rule", store_per_customer_day: "store daily cap per customer",
  store_per_customer_week: "store weekly cap per customer", store_global_per_hour: "store hourly cap",
};

function showSimulation(sim) {
  $("#simnote").textContent = sim ? sim.store + ", " + sim.day + ": " + sim.visits + " visits, " +
    sim.visits_linked + " linked to a consenting customer; rules version " + sim.rules_version : "No simulation reports yet.";
  rows($("#whynot tbody"), sim ? sim.rules : [], (r) => {
    const why = Object.entries(r.not_fired_because).map(([k, n]) => n + " × " + (WHY[k] || k));
    return [r.id + (r.enabled ? "" : " (disabled)"), fmt.int(r.fired),
      why.length ? why.join("; ") : r.fired ? "–" : "never reached (no consenting customer stayed long enough in its zone)"];
  });
}

async function campaignsPage() {
  await nav();
  const c = await api("/api/campaigns");
  rows($("#rules tbody"), c.rules, (r) => [r.offer_id, fmt.int(r.fired), r.configured ? "yes" : "no"]);
  const pick = $("#sim");
  c.simulations.forEach((s, i) => {
    const o = document.createElement("option"); o.value = String(i);
    o.textContent = s.day + " — " + s.store + " (" + s.file + ")"; pick.append(o);
  });
  pick.addEventListener("change", () => showSimulation(c.simulations[Number(pick.value)]));
  showSimulation(c.simulations[0]);
  document.body.dataset.ready = "1";
}

async function healthPage() {
  await nav();
  const gws = await api("/api/health");
  rows($("#gateways tbody"), gws, (g) => [g.store, g.gateway, g.status, fmt.time(g.last_seen),
    fmt.int(g.last_sequence), fmt.int(g.outbox_depth), fmt.int(g.gaps_reported),
    g.counting || "—"]);
  document.body.dataset.ready = "1";
}

function loginPage() {
  const p = new URLSearchParams(location.search);
  if (p.has("failed") || p.has("busy")) {
    const e = $("#error");
    e.textContent = p.has("busy") ? "Too many attempts: wait a minute." : "Wrong user name or password.";
    e.hidden = false;
  }
}

const pages = { chain: chainPage, store: storePage, campaigns: campaignsPage, health: healthPage, login: loginPage };
const run = pages[document.body.dataset.page];
if (run) Promise.resolve(run()).catch((e) => { document.body.dataset.error = String(e); console.error(e); });
