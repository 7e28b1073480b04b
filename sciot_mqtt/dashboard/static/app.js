// The dashboard page: renders the snapshots the server pushes on /events (Server-Sent Events).
// No library: the tables are DOM, the charts hand-written SVG.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
let snapshot = null;
let selected = decodeURIComponent((location.hash.match(/^#dev=(.+)$/) || [])[1] || "");
let userChose = selected !== ""; // until someone clicks a device, the page picks one

function el(tag, attrs = {}, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
const ms = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) + " ms" : v.toFixed(1) + " ms");
const num = (v, d = 1) => (v === null || v === undefined ? "–" : v.toFixed(d));
const sum = (xs) => xs.reduce((a, b) => a + b, 0);
function ago(t) {
  if (!t || !snapshot) return "–";
  const s = Math.max(0, snapshot.at - t);
  return s < 60 ? s.toFixed(0) + " s ago" : s < 3600 ? (s / 60).toFixed(0) + " min ago" : new Date(t * 1000).toLocaleTimeString();
}

// --- broker status and login ------------------------------------------------------------
function renderBroker(b) {
  const badge = document.getElementById("broker");
  badge.dataset.status = b.status;
  const words = { connected: "broker connected", connecting: "connecting to the broker…",
    login: "the broker needs the dashboard's password", refused: "password refused",
    disconnected: "broker unreachable, retrying" };
  badge.textContent = `${words[b.status] || b.status} · ${b.address} as ${b.account}`;
  const form = document.getElementById("login");
  form.hidden = !(b.status === "login" || b.status === "refused");
  document.getElementById("login-account").textContent = b.account;
  document.getElementById("login-why").textContent = b.status === "refused"
    ? `The broker refused that password (${b.detail}).`
    : "This broker requires logins: give the password of the dashboard's account (sciot-mqtt creds add " + b.account + ").";
}
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("password");
  await fetch("/login", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ password: input.value }) });
  input.value = "";
});

// --- fleet ------------------------------------------------------------------------------
function renderInstances(instances) {
  const body = document.querySelector("#instances tbody");
  body.replaceChildren();
  for (const i of instances) {
    const s = i.stats, w = s && s.window, last = i.points[i.points.length - 1];
    const tr = el("tr", { "data-instance": i.name });
    tr.append(el("td", {}, i.name),
      el("td", { class: i.online ? "state-online" : "state-offline" }, i.online === null ? "?" : i.online ? "online" : "offline"),
      el("td", {}, s ? `${s.devices.online} / ${s.devices.stale} / ${s.devices.offline}` : "–"),
      el("td", {}, last ? num(last[1]) : "–"),
      el("td", {}, s && s.inference ? String(s.inference.running) : "–"),
      el("td", {}, w ? ms(w.queue_ms) : "–"),
      el("td", {}, s ? num(s.rates.rx) : "–"));
    body.append(tr);
  }
}

function renderCounts(devices) {
  const all = Object.values(devices);
  const by = (f) => all.reduce((m, d) => ((m[f(d)] = (m[f(d)] || 0) + 1), m), {});
  const presence = by((d) => d.presence);
  const mode = by((d) => (d.presence === "offline" ? "offline" : d.decision ? d.decision.mode : "undecided"));
  const part = (m, keys) => keys.filter((k) => m[k]).map((k) => `${k} ${m[k]}`).join(", ") || "none";
  document.getElementById("device-counts").textContent =
    `Devices ${all.length}: ${part(presence, ["online", "stale", "offline"])}. ` +
    `Told to (mode now): ${part(mode, ["offload", "local", "probe", "undecided"])}. ` +
    "A local device still offloads now and then to measure its link, so where results came from (chart) differs.";
}

function lineChart(svg, series, { max, unit = "" } = {}) {
  // series: [{points: [[t, v]], cls}]; x = the last ten minutes
  svg.replaceChildren();
  const w = svg.clientWidth || 300, h = svg.clientHeight || 90, pad = 4;
  // The last ten minutes, or less while there is less to show.
  const first = Math.min(...series.flatMap((s) => s.points.map((p) => p[0])));
  const now = snapshot.at, t0 = Math.max(now - 600, Math.min(first, now - 30));
  const span = now - t0;
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v !== null);
  const top = max !== undefined ? max : Math.max(1e-9, ...values) * 1.1;
  for (const s of series) {
    let d = "";
    for (const [t, v] of s.points) {
      if (v === null || t < t0) continue;
      const x = pad + ((t - t0) / span) * (w - 2 * pad), y = h - pad - (v / top) * (h - 2 * pad);
      d += (d ? "L" : "M") + x.toFixed(1) + "," + y.toFixed(1);
    }
    if (d) svg.append(el("svg:path", { d, class: s.cls || "" }));
  }
  svg.append(el("svg:text", { x: 4, y: 11 }, values.length ? num(top, top < 10 ? 2 : 0) + unit : "no data yet"));
  svg.append(el("svg:text", { x: w - 4, y: h - 4, "text-anchor": "end" },
    span >= 599 ? "last 10 min" : `last ${Math.round(span)} s`));
}

function renderCharts(instances) {
  const pick = (k) => instances.map((i) => ({ points: i.points.map((p) => [p[0], p[k]]) }));
  lineChart(document.getElementById("chart-rate"), pick(1));
  lineChart(document.getElementById("chart-latency"),
    [...pick(2), ...pick(3).map((s) => ({ ...s, cls: "p99" }))], { unit: " ms" });
  lineChart(document.getElementById("chart-offload"),
    pick(4).map((s) => ({ points: s.points.map(([t, v]) => [t, v === null ? null : 100 * v]) })), { max: 100, unit: " %" });
}

function renderDevices(devices) {
  const body = document.querySelector("#devices tbody");
  body.replaceChildren();
  for (const [id, d] of Object.entries(devices)) {
    const dec = d.decision;
    const tr = el("tr", { "data-device": id, class: id === selected ? "selected" : "" });
    tr.append(el("td", {}, id), el("td", {}, d.kind || "–"), el("td", {}, d.model),
      el("td", { class: "state-" + d.presence }, d.presence),
      el("td", { "data-field": "mode" }, dec ? dec.mode : "–"),
      el("td", { "data-field": "split" }, dec ? `${dec.split} / ${d.ops}` : "–"),
      el("td", {}, dec ? ms(dec.predicted_ms) : "–"),
      el("td", { class: "why" }, dec ? dec.reason : ""));
    tr.addEventListener("click", () => select(id));
    body.append(tr);
  }
}

// --- one device -------------------------------------------------------------------------
function select(id) {
  selected = id;
  userChose = true;
  history.replaceState(null, "", "#dev=" + encodeURIComponent(id));
  render();
}

function splitChart(svg, d) {
  svg.replaceChildren();
  const p = d.predicted;
  const w = svg.clientWidth || 600, h = svg.clientHeight || 300;
  const left = 48, right = 8, top = 10, bottom = 34;
  if (!p) {
    svg.append(el("svg:text", { x: left, y: 40 }, "no prediction yet: the service has not measured this device's operators"));
    return;
  }
  const n = p.device_ms.length; // N + 1 split points
  const parts = ["device", "link", "queue", "edge"];
  const totals = p.device_ms.map((_, s) => sum(parts.map((k) => p[k + "_ms"][s])));
  const measured = d.measured || [];
  const top_ = Math.max(...totals, ...measured.map((m) => m.total_ms)) * 1.08 || 1;
  const bw = (w - left - right) / n, y = (v) => top + (h - top - bottom) * (1 - v / top_);
  // y axis: four gridlines
  for (let i = 0; i <= 4; i++) {
    const v = (top_ * i) / 4;
    svg.append(el("svg:line", { x1: left, x2: w - right, y1: y(v), y2: y(v), stroke: "#eee" }));
    svg.append(el("svg:text", { x: left - 4, y: y(v) + 3, "text-anchor": "end" }, num(v, v < 10 ? 1 : 0)));
  }
  svg.append(el("svg:text", { x: 2, y: top + 8 }, "ms"));
  const chosen = d.decision ? d.decision.split : -1;
  const labels = []; // drawn after every bar, so no bar covers them
  for (let s = 0; s < n; s++) {
    const g = el("svg:g", { "data-split": s, class: "split-point" });
    let base = 0;
    for (const k of parts) {
      const v = p[k + "_ms"][s];
      if (v > 0) g.append(el("svg:rect", { class: k, x: left + s * bw + 1, width: Math.max(bw - 2, 1),
        y: y(base + v), height: Math.max(y(base) - y(base + v), 0.5) }));
      base += v;
    }
    const tip = el("svg:title", {}, `split ${s}: ${ms(totals[s])} = device ${ms(p.device_ms[s])} + link ${ms(p.link_ms[s])} + queue ${ms(p.queue_ms[s])} + edge ${ms(p.edge_ms[s])}; sends ${p.bytes[s]} bytes`);
    g.append(tip);
    if (s === chosen) {
      g.classList.add("chosen-point");
      g.append(el("svg:rect", { class: "chosen", x: left + s * bw + 0.5, width: Math.max(bw - 1, 1), y: y(totals[s]) - 1, height: y(0) - y(totals[s]) + 1 }));
      const early = s < n / 2; // the label runs into the chart, never off its edge
      labels.push(el("svg:text", { x: left + (early ? s : s + 1) * bw, y: y(totals[s]) - 6,
        "text-anchor": early ? "start" : "end", fill: "#000", id: "chosen-label" }, `split ${s}: in force`));
    }
    if (n <= 40 || s % Math.ceil(n / 40) === 0 || s === n - 1)
      svg.append(el("svg:text", { x: left + (s + 0.5) * bw, y: h - bottom + 12, "text-anchor": "middle" }, String(s)));
    svg.append(g);
  }
  svg.append(...labels);
  for (const m of measured) {
    const dot = el("svg:circle", { class: "measured", "data-split": m.split, cx: left + (m.split + 0.5) * bw, cy: y(m.total_ms), r: 3 });
    dot.append(el("svg:title", {}, `measured at split ${m.split}: ${ms(m.total_ms)}`));
    svg.append(dot);
  }
  svg.append(el("svg:text", { x: left, y: h - 4 }, "split point: 0 = send the raw input … " + (n - 1) + " = all on the device"));
}

function renderDevice(devices) {
  const section = document.getElementById("device");
  const ids = Object.keys(devices);
  if (!userChose || !devices[selected]) {
    // An ESP32-class device with a prediction first: its split is the interesting one. (Its
    // first prediction may come after another device's: keep looking until someone clicks.)
    const esp = (i) => (devices[i].kind || "").startsWith("esp32");
    const keep = devices[selected] && devices[selected].predicted && (esp(selected) || !ids.some(esp)) ? selected : "";
    selected = keep || ids.find((i) => esp(i) && devices[i].predicted) ||
      ids.find((i) => devices[i].predicted) || ids[0] || "";
  }
  const d = devices[selected];
  section.hidden = !d;
  if (!d) return;
  document.getElementById("device-id").textContent = selected;
  const facts = document.getElementById("device-facts");
  facts.replaceChildren();
  const link = d.link;
  const rows = [
    ["state", `${d.presence}, explained by instance ${d.instance} ${ago(d.at)}`],
    ["chip (birth kind)", d.kind || "–"],
    ["model", `${d.model}, ${d.ops} operators (split N = ${d.ops}: all on the device)`],
    ["link (fitted)", link ? `${ms(link.latency_ms)} + ${link.kbps === null ? "unbounded" : num(link.kbps, 0) + " kbit/s"}, from ${link.samples} round trips` : "–"],
    ["split in force", d.decision ? `${d.decision.split} (${d.decision.mode}), ${ms(d.decision.predicted_ms)} predicted` : "–"],
    ["why", d.decision ? `${d.decision.reason} (when decided; the chart is now)` : "–"],
  ];
  for (const [k, v] of rows) facts.append(el("dt", {}, k), el("dd", { "data-fact": k }, v));
  splitChart(document.getElementById("split-chart"), d);
  const body = document.querySelector("#history tbody");
  body.replaceChildren();
  for (const h of [d.decision, ...d.history].filter(Boolean)) {
    const tr = el("tr");
    tr.append(el("td", {}, String(h.decision)), el("td", {}, h.at ? ago(h.at) : "before a restart"),
      el("td", {}, String(h.split)), el("td", {}, h.mode), el("td", {}, ms(h.predicted_ms)), el("td", { class: "why" }, h.reason));
    body.append(tr);
  }
}

function render() {
  if (!snapshot) return;
  renderBroker(snapshot.broker);
  renderInstances(snapshot.instances);
  renderCounts(snapshot.devices);
  renderCharts(snapshot.instances);
  renderDevice(snapshot.devices); // picks `selected` first, so the table marks it
  renderDevices(snapshot.devices);
  document.body.dataset.version = String((+document.body.dataset.version || 0) + 1);
}

const events = new EventSource("/events");
events.onmessage = (event) => { snapshot = JSON.parse(event.data); render(); };
events.onerror = () => { document.getElementById("broker").textContent = "dashboard server unreachable, retrying…"; };
window.addEventListener("resize", render);
