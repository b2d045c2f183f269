// distillguard console: a single page over the api/ endpoints. Plain
// JavaScript and SVG, no library and no build step, so that the binary
// carries all of it and nothing is fetched from elsewhere.
"use strict";

const BASE = location.pathname.replace(/index\.html$/, "").replace(/\/?$/, "/");
const VERDICTS = ["allow", "monitor", "throttle", "block"];
const COLORS = { allow: "#8aa1b8", monitor: "#d9a400", throttle: "#e06c00", block: "#c62828" };
const KIND_COLORS = {
  payment: "#7b1fa2", email_domain: "#00838f", ip: "#2e7d32", ip_prefix: "#558b2f",
  system_prompt: "#ef6c00", template: "#5d4037", signup_batch: "#ad1457", client: "#455a64",
};
let session = { mode: "offline" };

// ---- helpers -------------------------------------------------------------

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function enc(s) { return encodeURIComponent(s); }
function fmtNum(n) { return n == null ? "—" : Number(n).toLocaleString("en"); }
function fmtRisk(r) { return r == null ? "—" : Number(r).toFixed(4); }
function fmtTime(t) { return t ? String(t).replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC") : "—"; }
function verdict(v) { return v ? `<span class="v v-${esc(v)}">${esc(v)}</span>` : "—"; }
function acctLink(id) { return `<a href="#/account/${enc(id)}">${esc(id)}</a>`; }
function campLink(id) { return id ? `<a href="#/campaign/${enc(id)}">${esc(id)}</a>` : "—"; }
function keyLink(id) { return `<a href="#/key/${enc(id)}">${esc(id)}</a>`; }
function principalLink(id) { return `<a href="#/principal/${enc(id)}">${esc(id)}</a>`; }
function fmtBytes(n) {
  if (n == null) return "—";
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]; let i = 0; let x = Number(n);
  while (x >= 1024 && i < u.length - 1) { x /= 1024; i++; }
  return `${x.toFixed(i ? 1 : 0)} ${u[i]}`;
}
function svgEl(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function title(el, text) { const t = svgEl("title"); t.textContent = text; el.appendChild(t); return el; }

async function api(path, opts) {
  const o = Object.assign({ credentials: "same-origin", headers: {} }, opts || {});
  if (o.method === "POST") {
    o.headers["content-type"] = "application/json";
    if (session.csrf) o.headers["x-csrf-token"] = session.csrf;
  }
  const r = await fetch(BASE + "api/" + path, o);
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (r.status === 401 && session.mode === "live") { session.actor = null; showLogin(); throw new Error("log in"); }
  if (!r.ok) throw new Error((body && body.error) || `HTTP ${r.status}`);
  return body;
}

function main() { return document.getElementById("main"); }
function setMain(html) { const m = main(); m.innerHTML = html; return m; }
function fail(e) { setMain(`<div class="error" role="alert">${esc(e.message || e)}</div>`); }

function parseHash() {
  const h = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = h.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(qs || "") };
}
function go(path, params) {
  const qs = params && [...params.entries()].filter(([, v]) => v !== "").length
    ? "?" + new URLSearchParams([...params.entries()].filter(([, v]) => v !== "")).toString() : "";
  location.hash = "#" + path + qs;
}

// ---- charts ---------------------------------------------------------------

// A stacked bar chart of escalations per day by verdict.
function stackedDays(rows, label) {
  const W = 640, H = 220, L = 40, B = 40, T = 10;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart" });
  const max = Math.max(1, ...rows.map((r) => r.monitor + r.throttle + r.block));
  const bw = Math.max(2, (W - L - 10) / Math.max(1, rows.length) - 2);
  svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis", stroke: "#d8dde3" }));
  rows.forEach((r, i) => {
    let y = H - B;
    for (const v of ["monitor", "throttle", "block"]) {
      const h = (r[v] / max) * (H - B - T);
      if (h > 0) {
        const rect = svgEl("rect", { x: L + i * (bw + 2), y: y - h, width: bw, height: h, fill: COLORS[v], "data-verdict": v });
        title(rect, `${String(r.day).slice(0, 10)}: ${r[v]} ${v}`);
        svg.appendChild(rect);
        y -= h;
      }
    }
    if (rows.length <= 16 || i % Math.ceil(rows.length / 12) === 0) {
      const t = svgEl("text", { x: L + i * (bw + 2), y: H - B + 14 });
      t.textContent = String(r.day).slice(5, 10);
      svg.appendChild(t);
    }
  });
  const m = svgEl("text", { x: 2, y: T + 8 }); m.textContent = fmtNum(max); svg.appendChild(m);
  return svg;
}

// The risk histogram on −log10(1 − risk), thresholds drawn on it.
function histogram(h, thresholds) {
  const W = 640, H = 220, L = 40, B = 40, T = 16;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Risk histogram of all accounts, with the verdict thresholds", class: "chart" });
  const counts = h.counts || [];
  const max = Math.max(1, ...counts);
  const n = counts.length || 1;
  const bw = (W - L - 10) / n;
  const xOf = (risk) => L + (-Math.log10(Math.max(1e-12, 1 - risk)) / (h.step || 0.1)) * bw;
  counts.forEach((c, i) => {
    // Log-scaled heights: a few risky accounts stay visible beside thousands.
    const hh = c > 0 ? (Math.log10(c + 1) / Math.log10(max + 1)) * (H - B - T) : 0;
    const lo = 1 - Math.pow(10, -i * (h.step || 0.1)), hi = 1 - Math.pow(10, -(i + 1) * (h.step || 0.1));
    const rect = svgEl("rect", { x: L + i * bw, y: H - B - hh, width: Math.max(1, bw - 1), height: hh, fill: "#5b7da8", "data-count": c });
    title(rect, `risk ${lo.toFixed(4)}–${hi.toFixed(4)}: ${c} accounts`);
    svg.appendChild(rect);
  });
  for (const r of [0.5, 0.9, 0.99, 0.999, 0.9999]) {
    const t = svgEl("text", { x: xOf(r) - 10, y: H - B + 14 }); t.textContent = String(r); svg.appendChild(t);
  }
  if (thresholds) {
    for (const v of ["monitor", "throttle", "block"]) {
      if (thresholds[v] == null) continue;
      const x = xOf(thresholds[v]);
      svg.appendChild(svgEl("line", { x1: x, y1: T, x2: x, y2: H - B, stroke: COLORS[v], "stroke-width": 2, "stroke-dasharray": "4 3", "data-threshold": v }));
      const t = svgEl("text", { x: x + 3, y: T + (v === "monitor" ? 0 : v === "throttle" ? 12 : 24) });
      t.textContent = `${v} ${Number(thresholds[v]).toFixed(4)}`;
      svg.appendChild(t);
    }
  }
  const x = svgEl("text", { x: L, y: H - 6 }); x.textContent = "risk (log scale towards 1); bar height log(accounts)"; svg.appendChild(x);
  return svg;
}

// Horizontal bars: [{label, value, href}].
function hbars(rows, label) {
  const W = 520, row = 22, H = Math.max(row, rows.length * row) + 4, L = 190;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart" });
  const max = Math.max(1, ...rows.map((r) => r.value));
  rows.forEach((r, i) => {
    const t = svgEl("text", { x: 0, y: i * row + 15 }); t.textContent = r.label.length > 30 ? r.label.slice(0, 29) + "…" : r.label; svg.appendChild(t);
    const w = (r.value / max) * (W - L - 60);
    svg.appendChild(title(svgEl("rect", { x: L, y: i * row + 4, width: Math.max(1, w), height: row - 8, fill: r.color || "#5b7da8" }), `${r.label}: ${r.value}`));
    const v = svgEl("text", { x: L + w + 4, y: i * row + 15 }); v.textContent = fmtNum(r.value); svg.appendChild(v);
  });
  return svg;
}

// Bars per day: [{day, requests}].
function dayBars(days, label) {
  const W = 640, H = 180, L = 40, B = 30, T = 10;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart" });
  const max = Math.max(1, ...days.map((d) => d.requests));
  const bw = Math.max(2, (W - L - 10) / Math.max(1, days.length) - 2);
  days.forEach((d, i) => {
    const h = (d.requests / max) * (H - B - T);
    svg.appendChild(title(svgEl("rect", { x: L + i * (bw + 2), y: H - B - h, width: bw, height: h, fill: "#5b7da8" }), `${String(d.day).slice(0, 10)}: ${d.requests} requests`));
    if (days.length <= 16 || i % Math.ceil(days.length / 12) === 0) {
      const t = svgEl("text", { x: L + i * (bw + 2), y: H - B + 14 }); t.textContent = String(d.day).slice(5, 10); svg.appendChild(t);
    }
  });
  const m = svgEl("text", { x: 2, y: T + 8 }); m.textContent = fmtNum(max); svg.appendChild(m);
  return svg;
}

// Members acting per window over time: [{start, members, requests}].
function windowBars(wins) {
  const W = 1000, H = 200, L = 40, B = 30, T = 10;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart wide", id: "sync-timeline",
    "aria-label": `Members acting per window: ${wins.length} windows` });
  const t0 = Date.parse(wins[0].start), t1 = Math.max(t0 + 1, Date.parse(wins[wins.length - 1].start));
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 10);
  const max = Math.max(1, ...wins.map((w) => w.members));
  for (const w of wins) {
    const h = (w.members / max) * (H - B - T);
    svg.appendChild(title(svgEl("rect", { x: x(Date.parse(w.start)).toFixed(1), y: H - B - h, width: 2, height: h, fill: "#c62828", "data-window": "1" }),
      `${fmtTime(w.start)}: ${w.members} members, ${w.requests} requests`));
  }
  const m = svgEl("text", { x: 2, y: T + 8 }); m.textContent = fmtNum(max); svg.appendChild(m);
  const a = svgEl("text", { x: L, y: H - 8 }); a.textContent = fmtTime(wins[0].start); svg.appendChild(a);
  const b = svgEl("text", { x: W - 160, y: H - 8 }); b.textContent = fmtTime(wins[wins.length - 1].start); svg.appendChild(b);
  return svg;
}

// Hour-of-day heatmap (24 cells).
function heat(hours, label) {
  const div = document.createElement("div");
  div.className = "heat"; div.setAttribute("role", "img"); div.setAttribute("aria-label", label);
  const max = Math.max(1, ...hours);
  hours.forEach((n, h) => {
    const c = document.createElement("div");
    const a = n / max;
    c.style.background = `rgba(31, 95, 191, ${0.08 + 0.92 * a})`;
    c.style.color = a > 0.5 ? "#fff" : "#1b1f24";
    c.title = `${String(h).padStart(2, "0")}:00 UTC: ${n} requests`;
    c.textContent = String(h).padStart(2, "0");
    div.appendChild(c);
  });
  return div;
}

// Risk over time with the escalations marked.
function riskLine(tl, thresholds) {
  const W = 760, H = 240, L = 46, B = 34, T = 12;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Risk over time with escalations", class: "chart", id: "risk-timeline" });
  const pts = tl.risk || [];
  const esc_ = tl.escalations || [];
  const times = pts.map((p) => Date.parse(p.ts)).concat(esc_.map((e) => Date.parse(e.ts)));
  if (!times.length) { const t = svgEl("text", { x: 10, y: 20 }); t.textContent = "no history"; svg.appendChild(t); return svg; }
  const t0 = Math.min(...times), t1 = Math.max(t0 + 1, ...times);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 10);
  const y = (r) => T + (1 - r) * (H - B - T);
  svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W, y2: H - B, stroke: "#d8dde3" }));
  for (const r of [0, 0.5, 1]) { const t = svgEl("text", { x: 4, y: y(r) + 4 }); t.textContent = r.toFixed(1); svg.appendChild(t); }
  if (thresholds) for (const v of ["monitor", "throttle", "block"]) {
    if (thresholds[v] == null) continue;
    svg.appendChild(svgEl("line", { x1: L, y1: y(thresholds[v]), x2: W - 10, y2: y(thresholds[v]), stroke: COLORS[v], "stroke-dasharray": "4 3" }));
  }
  if (pts.length) {
    const d = pts.map((p, i) => `${i ? "L" : "M"}${x(Date.parse(p.ts)).toFixed(1)},${y(p.risk).toFixed(1)}`).join(" ");
    svg.appendChild(svgEl("path", { d, fill: "none", stroke: "#1f5fbf", "stroke-width": 2 }));
    for (const p of pts) svg.appendChild(title(svgEl("circle", { cx: x(Date.parse(p.ts)), cy: y(p.risk), r: 2.5, fill: "#1f5fbf" }), `${fmtTime(p.ts)}: risk ${p.risk} after ${p.requests} requests`));
  }
  esc_.forEach((e) => {
    const cx = x(Date.parse(e.ts));
    svg.appendChild(title(svgEl("line", { x1: cx, y1: T, x2: cx, y2: H - B, stroke: COLORS[e.verdict], "stroke-width": 2, class: "escalation" }), `${fmtTime(e.ts)}: ${e.verdict} by ${e.by}`));
  });
  const a = svgEl("text", { x: L, y: H - 10 }); a.textContent = fmtTime(new Date(t0).toISOString()); svg.appendChild(a);
  const b = svgEl("text", { x: W - 150, y: H - 10 }); b.textContent = fmtTime(new Date(t1).toISOString()); svg.appendChild(b);
  return svg;
}

// A force-directed graph of members and their shared indicators.
function graph(g) {
  const W = 1000, H = 560;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "graph", id: "campaign-graph",
    "aria-label": `Campaign graph: ${g.nodes.length} nodes, ${g.edges.length} links` });
  const nodes = g.nodes.map((n, i) => Object.assign({}, n, {
    x: W / 2 + 200 * Math.cos(i * 2.399) * Math.sqrt(i / g.nodes.length),
    y: H / 2 + 200 * Math.sin(i * 2.399) * Math.sqrt(i / g.nodes.length), vx: 0, vy: 0 }));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const edges = g.edges.map(([a, b]) => [byId.get(a), byId.get(b)]).filter(([a, b]) => a && b);
  // Fruchterman–Reingold with a grid for repulsion; a fixed number of steps
  // so the layout is the same on every load.
  const k = Math.sqrt((W * H) / Math.max(1, nodes.length)) * 0.9;
  for (let it = 0; it < 160; it++) {
    const temp = 40 * (1 - it / 160) + 1;
    const cell = k * 2, grid = new Map();
    for (const n of nodes) { n.dx = 0; n.dy = 0; const key = `${Math.floor(n.x / cell)},${Math.floor(n.y / cell)}`; (grid.get(key) || grid.set(key, []).get(key)).push(n); }
    for (const n of nodes) {
      const gx = Math.floor(n.x / cell), gy = Math.floor(n.y / cell);
      for (let ix = -1; ix <= 1; ix++) for (let iy = -1; iy <= 1; iy++) {
        for (const m of grid.get(`${gx + ix},${gy + iy}`) || []) {
          if (m === n) continue;
          let dx = n.x - m.x, dy = n.y - m.y; const d = Math.max(0.01, Math.hypot(dx, dy));
          const f = (k * k) / d; n.dx += (dx / d) * f; n.dy += (dy / d) * f;
        }
      }
    }
    for (const [a, b] of edges) {
      const dx = a.x - b.x, dy = a.y - b.y, d = Math.max(0.01, Math.hypot(dx, dy)), f = (d * d) / k;
      a.dx -= (dx / d) * f; a.dy -= (dy / d) * f; b.dx += (dx / d) * f; b.dy += (dy / d) * f;
    }
    for (const n of nodes) {
      n.dx += (W / 2 - n.x) * 0.005; n.dy += (H / 2 - n.y) * 0.005;
      const d = Math.max(0.01, Math.hypot(n.dx, n.dy));
      n.x = Math.min(W - 12, Math.max(12, n.x + (n.dx / d) * Math.min(d, temp)));
      n.y = Math.min(H - 12, Math.max(12, n.y + (n.dy / d) * Math.min(d, temp)));
    }
  }
  const ge = svgEl("g", { stroke: "#c3cbd5", "stroke-width": 0.7 });
  for (const [a, b] of edges) ge.appendChild(svgEl("line", { x1: a.x.toFixed(1), y1: a.y.toFixed(1), x2: b.x.toFixed(1), y2: b.y.toFixed(1) }));
  svg.appendChild(ge);
  let labelled = 12; // the most shared indicators carry their value
  for (const n of nodes) {
    if (n.kind === "account") {
      const c = svgEl("circle", { cx: n.x.toFixed(1), cy: n.y.toFixed(1), r: 5, fill: COLORS[n.verdict] || COLORS.allow, "data-node": "account", tabindex: "0" });
      title(c, `${n.label} (${n.verdict || "?"}, risk ${fmtRisk(n.risk)})`);
      c.addEventListener("click", () => go(`/account/${enc(n.label)}`));
      c.addEventListener("keydown", (e) => { if (e.key === "Enter") go(`/account/${enc(n.label)}`); });
      svg.appendChild(c);
    } else {
      const r = 6 + Math.min(14, Math.sqrt(n.campaign_accounts || 1) * 1.5);
      const s = svgEl("rect", { x: (n.x - r).toFixed(1), y: (n.y - r).toFixed(1), width: 2 * r, height: 2 * r, rx: 3,
        fill: KIND_COLORS[n.kind] || "#444", "fill-opacity": (0.35 + 0.65 * (n.rarity ?? 1)).toFixed(2), "data-node": "indicator" });
      title(s, `${n.kind}: ${n.label}\n${n.campaign_accounts} of ${n.all_accounts} accounts on it are this campaign's (rarity ${(100 * (n.rarity ?? 1)).toFixed(0)}%)`);
      svg.appendChild(s);
      if (labelled-- > 0) {
        const t = svgEl("text", { x: (n.x + r + 2).toFixed(1), y: (n.y + 4).toFixed(1) });
        t.textContent = n.label.length > 24 ? n.label.slice(0, 23) + "…" : n.label;
        svg.appendChild(t);
      }
    }
  }
  return svg;
}

// ---- tables -----------------------------------------------------------------

// A sortable, paginated table over a list endpoint. `cols`: [{key, label, sort, num, render}].
async function listView(kind, cols, filters, r, heading) {
  const params = r.params;
  const q = new URLSearchParams(params);
  if (!q.get("limit")) q.set("limit", "50");
  const data = await api(`${kind}?${q.toString()}`);
  const m = setMain(`<h2>${esc(heading || kind[0].toUpperCase() + kind.slice(1))}</h2>
    <form class="filters" id="filters" aria-label="Filters">
      <label>Text<input name="q" value="${esc(params.get("q") || "")}" aria-label="Filter text"></label>
      ${filters.map((f) => f.html(params)).join("")}
      <button type="submit" class="primary">Apply</button>
      <button type="button" id="clear">Clear</button>
    </form>
    <table aria-label="${esc(kind)}"><thead><tr>${cols.map((c) => `<th class="${c.num ? "num" : ""}" scope="col">${c.sort
      ? `<button type="button" data-sort="${c.sort}" aria-label="Sort by ${esc(c.label)}">${esc(c.label)}${params.get("sort") === c.sort ? (params.get("order") === "asc" ? " ▲" : " ▼") : ""}</button>` : esc(c.label)}</th>`).join("")}</tr></thead>
    <tbody>${data.items.map((row) => `<tr>${cols.map((c) => `<td class="${c.num ? "num" : ""}">${c.render(row)}</td>`).join("")}</tr>`).join("")}</tbody></table>
    <div class="pager"><button type="button" id="prev" ${data.offset <= 0 ? "disabled" : ""}>Previous</button>
    <span>${fmtNum(data.total ? data.offset + 1 : 0)}–${fmtNum(Math.min(data.total, data.offset + data.limit))} of ${fmtNum(data.total)}</span>
    <button type="button" id="next" ${data.offset + data.limit >= data.total ? "disabled" : ""}>Next</button></div>`);
  const path = `/${kind}`;
  m.querySelector("#filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams(new FormData(e.target));
    if (params.get("sort")) p.set("sort", params.get("sort"));
    if (params.get("order")) p.set("order", params.get("order"));
    go(path, p);
  });
  m.querySelector("#clear").addEventListener("click", () => go(path));
  m.querySelectorAll("[data-sort]").forEach((b) => b.addEventListener("click", () => {
    const p = new URLSearchParams(params); const s = b.dataset.sort;
    p.set("order", p.get("sort") === s && p.get("order") !== "asc" ? "asc" : "desc"); p.set("sort", s); p.delete("offset");
    go(path, p);
  }));
  const page = (d) => { const p = new URLSearchParams(params); p.set("offset", String(Math.max(0, data.offset + d * data.limit))); go(path, p); };
  m.querySelector("#prev").addEventListener("click", () => page(-1));
  m.querySelector("#next").addEventListener("click", () => page(1));
}

function selectFilter(name, label, options) {
  return { html: (p) => `<label>${esc(label)}<select name="${name}" aria-label="${esc(label)}"><option value="">any</option>${options.map((o) =>
    `<option ${p.get(name) === o ? "selected" : ""}>${esc(o)}</option>`).join("")}</select></label>` };
}
function textFilter(name, label) {
  return { html: (p) => `<label>${esc(label)}<input name="${name}" value="${esc(p.get(name) || "")}" aria-label="${esc(label)}"></label>` };
}

function reasonsHtml(reasons) {
  return (reasons || []).map((r) => `<div class="reason"><code>${esc(r.signal)}</code> ${r.contribution ? `(${r.contribution > 0 ? "+" : ""}${Number(r.contribution).toFixed(2)})` : ""} ${esc(r.detail)}</div>`).join("");
}

// ---- views ------------------------------------------------------------------

async function overview() {
  const o = await api("overview");
  const m = setMain(`<h2>Overview</h2>
    <div class="stats">
      <div class="stat">Events<b>${fmtNum(o.stats.events)}</b></div>
      <div class="stat">Accounts<b>${fmtNum(o.stats.accounts)}</b></div>
      ${VERDICTS.map((v) => `<div class="stat">${verdict(v)}<b><a href="#/accounts?verdict=${v}">${fmtNum(o.verdicts[v])}</a></b></div>`).join("")}
      <div class="stat">Campaigns<b><a href="#/campaigns">${fmtNum(o.campaign_count)}</a></b></div>
      <div class="stat">Keys above allow<b><a href="#/keys">${fmtNum(o.key_count)}</a></b></div>
    </div>
    <div id="health"></div>
    <div class="grid">
      <section class="card" aria-labelledby="h-time"><h3 id="h-time">Accounts escalated per day</h3><div id="c-time"></div>
        <div class="legend">${["monitor", "throttle", "block"].map((v) => `<span><i class="v-${v}"></i>${v}</span>`).join("")}</div>
        ${o.has_timelines ? "" : `<p class="muted">From the time each account was flagged; run <code>analyze --timeline</code> for every escalation.</p>`}</section>
      <section class="card" aria-labelledby="h-hist"><h3 id="h-hist">Risk of every account</h3><div id="c-hist"></div></section>
      <section class="card" aria-labelledby="h-reasons"><h3 id="h-reasons">Top reasons of flagged accounts</h3><div id="c-reasons"></div></section>
      <section class="card" aria-labelledby="h-camps"><h3 id="h-camps">Campaigns by accounts</h3><div id="c-camps"></div></section>
      ${o.exfil ? `<section class="card" aria-labelledby="h-exfil"><h3 id="h-exfil">Exfiltration</h3>
        <div class="stats"><div class="stat">Principals flagged<b><a href="#/exfil?flagged=yes">${fmtNum(o.exfil.flagged)}</a></b></div>
        <div class="stat">With alerts<b><a href="#/exfil">${fmtNum(o.exfil.with_alerts)}</a></b></div>
        <div class="stat">Principal-days<b>${fmtNum(o.exfil.principal_days)}</b></div>
        <div class="stat">Flagged days<b>${fmtNum(o.exfil.flag_days)}</b></div></div><div id="c-exfil"></div></section>` : ""}
    </div>`);
  m.querySelector("#c-time").appendChild(stackedDays(o.over_time, "Accounts escalated per day, by verdict"));
  m.querySelector("#c-hist").appendChild(histogram(o.histogram, o.thresholds));
  m.querySelector("#c-reasons").appendChild(hbars(o.top_reasons.map((r) => ({ label: r.signal, value: r.accounts })), "Top reasons of flagged accounts"));
  const camps = o.campaigns.map((c) => ({ label: `${c.campaign_id} (${fmtNum(c.requests)} req)`, value: c.accounts, color: COLORS.block }));
  m.querySelector("#c-camps").appendChild(camps.length ? hbars(camps, "Campaigns by accounts") : Object.assign(document.createElement("p"), { textContent: "No campaigns." }));
  if (o.exfil && o.exfil.signals_of_flagged.length) {
    m.querySelector("#c-exfil").appendChild(hbars(o.exfil.signals_of_flagged.map((x) => ({ label: x.signal, value: x.principals })), "Signals of flagged principals"));
  }
  m.querySelectorAll("#c-reasons text").forEach((t) => { /* plain labels */ t.setAttribute("class", "label"); });
  if (o.health) {
    const h = o.health;
    m.querySelector("#health").innerHTML = `<section class="card" aria-labelledby="h-health"><h3 id="h-health">Detector health</h3>
      <div class="stats">${Object.entries(h).map(([k, v]) => `<div class="stat">${esc(k.replace(/_/g, " "))}<b>${esc(typeof v === "number" ? fmtNum(v) : v)}</b></div>`).join("")}</div></section>`;
  }
}

async function campaignsView(r) {
  await listView("campaigns", [
    { label: "Campaign", render: (c) => campLink(c.campaign_id), sort: "id" },
    { label: "Accounts", num: true, sort: "accounts", render: (c) => fmtNum(c.accounts) },
    { label: "Requests", num: true, sort: "requests", render: (c) => fmtNum(c.requests) },
    { label: "Mean risk", num: true, sort: "risk", render: (c) => fmtRisk(c.score) },
    { label: "Confirmed", sort: "detected_at", render: (c) => esc(fmtTime(c.detected_at)) },
    { label: "Capability", render: (c) => esc(c.capability || "—") },
    { label: "Why", render: (c) => esc(c.reason || "") },
  ], [], r);
}

async function accountsView(r) {
  await listView("accounts", [
    { label: "Account", sort: "id", render: (a) => acctLink(a.account_id) },
    { label: "Risk", num: true, sort: "risk", render: (a) => fmtRisk(a.risk) },
    { label: "Verdict", render: (a) => verdict(a.verdict) },
    { label: "Flagged at", sort: "flagged_at", render: (a) => esc(fmtTime(a.flagged_at)) },
    { label: "Campaign", render: (a) => campLink(a.campaign_id) },
    { label: "Top reason", render: (a) => a.top_reason ? `<code>${esc(a.top_reason)}</code>` : "—" },
  ], [selectFilter("verdict", "Verdict", VERDICTS), textFilter("campaign", "Campaign"), textFilter("signal", "Signal")], r);
}

async function keysView(r) {
  await listView("keys", [
    { label: "Key", sort: "id", render: (k) => keyLink(k.key_id) },
    { label: "Account", render: (k) => acctLink(k.account_id) },
    { label: "Risk", num: true, sort: "risk", render: (k) => fmtRisk(k.risk) },
    { label: "Verdict", render: (k) => verdict(k.verdict) },
    { label: "Requests", num: true, sort: "requests", render: (k) => fmtNum(k.requests) },
    { label: "Flagged at", render: (k) => esc(fmtTime(k.flagged_at)) },
    { label: "Top reason", render: (k) => k.top_reason ? `<code>${esc(k.top_reason)}</code>` : "—" },
  ], [selectFilter("verdict", "Verdict", VERDICTS)], r);
}

const EXFIL_SIGNALS = ["external_copy", "exposure", "impossible_travel", "new_network", "new_user_agent", "enumeration",
  "new_prefix", "volume_spike", "egress", "off_hours", "slow_drip", "departure"];

async function exfilView(r) {
  await listView("exfil", [
    { label: "Principal", sort: "id", render: (p) => principalLink(p.principal) },
    { label: "Score", num: true, sort: "score", render: (p) => Number(p.score).toFixed(2) },
    { label: "Flagged at", sort: "flagged_at", render: (p) => esc(fmtTime(p.flagged_at)) },
    { label: "Flagged days", num: true, render: (p) => fmtNum(p.flagged_days) },
    { label: "Sensitive read", num: true, sort: "bytes", render: (p) => esc(fmtBytes(p.sensitive_bytes)) },
    { label: "From outside", num: true, render: (p) => esc(fmtBytes(p.sensitive_bytes_outside)) },
    { label: "Strongest alert", render: (p) => p.top ? `<code>${esc(p.top.signal)}</code> ${esc(p.top.reason)}` : "—" },
  ], [selectFilter("flagged", "Flagged", ["yes", "no"]), selectFilter("signal", "Signal", EXFIL_SIGNALS)], r, "Exfiltration");
}

async function principalView(id) {
  const p = await api(`exfil/${enc(id)}`);
  setMain(`<h2>Principal ${esc(p.principal)}</h2>
    <div class="stats">
      <div class="stat">Flagged at<b>${esc(fmtTime(p.flagged_at))}</b></div>
      <div class="stat">Score<b>${Number(p.score).toFixed(2)}</b></div>
      <div class="stat">Flagged days<b>${fmtNum(p.flagged_days)}</b></div>
      <div class="stat">Active days<b>${fmtNum(p.active_days)}</b></div>
      <div class="stat">Sensitive read<b>${esc(fmtBytes(p.sensitive_bytes))}</b></div>
      <div class="stat">Before the flag<b>${esc(fmtBytes(p.sensitive_bytes_before_flag))}</b></div>
      <div class="stat">From outside<b>${esc(fmtBytes(p.sensitive_bytes_outside))}</b></div>
    </div>
    <section class="card" aria-labelledby="h-alerts"><h3 id="h-alerts">Alerts (${fmtNum(p.alerts.length)} kept of ${fmtNum(p.alerts_total)})</h3>
    <table aria-label="alerts"><thead><tr><th scope="col">Time</th><th scope="col">Signal</th><th scope="col" class="num">Weight</th><th scope="col">Reason</th><th scope="col">Address</th><th scope="col">Bucket</th><th scope="col">Destination</th></tr></thead>
    <tbody>${p.alerts.map((a) => `<tr><td>${esc(fmtTime(a.ts))}</td><td><code>${esc(a.signal)}</code></td><td class="num">${Number(a.weight).toFixed(2)}</td><td>${esc(a.reason)}</td>
      <td>${esc(a.source_ip || "—")}${a.outside ? " (outside)" : ""}</td><td>${esc(a.bucket || "—")}</td><td>${esc(a.destination || "—")}</td></tr>`).join("")}</tbody></table></section>
    <section class="card" aria-labelledby="h-flags"><h3 id="h-flags">Days flagged</h3><p>${p.flags.map((t) => esc(fmtTime(t))).join(", ") || "none"}</p></section>`);
}

async function campaignView(id) {
  const d = await api(`campaigns/${enc(id)}`);
  const c = d.campaign;
  const s = d.summary;
  const live = session.mode === "live" && session.actor;
  const m = setMain(`<h2>Campaign ${esc(c.campaign_id)}</h2>
    <div class="stats">
      <div class="stat">Accounts<b>${fmtNum(s.accounts)}</b></div>
      <div class="stat">Requests<b>${fmtNum(s.requests)}</b></div>
      <div class="stat">Output tokens<b>${fmtNum(s.output_tokens)}</b></div>
      <div class="stat">Mean risk<b>${fmtRisk(s.score)}</b></div>
      <div class="stat">Confirmed<b>${esc(fmtTime(c.detected_at))}</b></div>
      <div class="stat">Synchronised windows<b>${fmtNum(d.synchrony && d.synchrony.windows)}</b></div>
    </div>
    <div class="actions">
      <a href="${BASE}api/campaigns/${enc(id)}/stix" download="${esc(id)}.stix.json" class="button" id="stix">Export STIX 2.1</a>
      <a href="#/accounts?campaign=${enc(id)}">Members as a list</a>
      ${live ? `<button type="button" class="danger" id="block-all">Block all ${fmtNum(s.accounts)} members…</button>` : ""}
    </div>
    <section class="card" aria-labelledby="h-why"><h3 id="h-why">Why it was linked</h3>${(d.reasons || []).map((x) => `<div class="reason">${esc(x)}</div>`).join("")}</section>
    <section class="card" aria-labelledby="h-graph"><h3 id="h-graph">Members and what they share</h3>
      <div class="legend"><span><i class="v-block"></i>account (colour: verdict)</span>${Object.entries(KIND_COLORS).map(([k, v]) => `<span><i data-color="${v}"></i>${esc(k.replace(/_/g, " "))}</span>`).join("")}
      <span>indicator size: campaign accounts on it; paler: shared with more accounts outside</span></div>
      <div id="graph"></div><p class="muted" id="graph-note">${fmtNum(d.graph.members_shown)} of ${fmtNum(d.members.length)} members (those sharing the most first) and the ${fmtNum(d.graph.indicators_shown)} most shared of ${fmtNum(d.graph.indicators_total)} indicators; click an account to open it.</p></section>
    <section class="card" aria-labelledby="h-sync"><h3 id="h-sync">Synchrony: members acting per ${esc(d.activity.window_minutes)}-minute window</h3><div id="c-sync"></div></section>
    <div class="grid">
      <section class="card" aria-labelledby="h-days"><h3 id="h-days">Members' requests per day</h3><div id="c-days"></div></section>
      <section class="card" aria-labelledby="h-tokens"><h3 id="h-tokens">Output tokens per day</h3><div id="c-tokens"></div></section>
      <section class="card" aria-labelledby="h-hours"><h3 id="h-hours">Members' requests by hour of day (UTC)</h3><div id="c-hours"></div></section>
    </div>
    <section class="card" aria-labelledby="h-ind"><h3 id="h-ind">Indicators and templates</h3>
      <table aria-label="Indicators"><thead><tr><th scope="col">Kind</th><th scope="col">Value</th><th class="num" scope="col">Campaign accounts</th><th class="num" scope="col">All accounts</th></tr></thead><tbody>
      ${d.indicators.map((n) => `<tr><td>${esc(n.kind)}</td><td><a href="#/accounts?q=${enc(n.value)}">${esc(n.value)}</a></td><td class="num">${fmtNum(n.campaign_accounts)}</td><td class="num">${fmtNum(n.all_accounts)}</td></tr>`).join("")}
      </tbody></table>
      ${d.samples ? `<h3>Redacted samples</h3>${d.samples.map((x) => `<pre>${esc(typeof x === "string" ? x : JSON.stringify(x))}</pre>`).join("")}` : ""}
    </section>
    <section class="card" aria-labelledby="h-members"><h3 id="h-members">Members</h3>
      <table aria-label="Members"><thead><tr><th scope="col">Account</th><th class="num" scope="col">Risk</th><th scope="col">Verdict</th><th scope="col">Flagged at</th><th scope="col">Top reason</th></tr></thead><tbody>
      ${d.members.slice(0, 500).map((a) => `<tr><td>${acctLink(a.account_id)}</td><td class="num">${fmtRisk(a.risk)}</td><td>${verdict(a.verdict)}</td><td>${esc(fmtTime(a.flagged_at))}</td><td>${a.top_reason ? `<code>${esc(a.top_reason)}</code>` : "—"}</td></tr>`).join("")}
      </tbody></table>${d.members.length > 500 ? `<p class="muted">First 500 of ${fmtNum(d.members.length)}; <a href="#/accounts?campaign=${enc(id)}">all as a list</a>.</p>` : ""}
    </section>`);
  m.querySelectorAll(".legend i[data-color]").forEach((i) => { i.style.background = i.dataset.color; });
  m.querySelector("#graph").appendChild(graph(d.graph));
  const act = d.activity;
  const note = (t) => Object.assign(document.createElement("p"), { className: "muted", textContent: t });
  const wins = act.windows || null;
  if (wins && wins.length) {
    m.querySelector("#c-sync").appendChild(windowBars(wins));
    // Requests and tokens per day, from the log's windows.
    const perDay = new Map();
    for (const w of wins) {
      const day = String(w.start).slice(0, 10) + "T00:00:00Z";
      const e = perDay.get(day) || { day, requests: 0, tokens: 0 };
      e.requests += w.requests; e.tokens += w.output_tokens; perDay.set(day, e);
    }
    const days = [...perDay.values()];
    m.querySelector("#c-days").appendChild(dayBars(days, "Members' requests per day"));
    m.querySelector("#c-tokens").appendChild(dayBars(days.map((x) => ({ day: x.day, requests: x.tokens })), "Output tokens per day"));
  } else {
    m.querySelector("#c-sync").appendChild(note("Open the console with the event log (console REPORT --events LOG) for the synchrony timeline and tokens over time."));
    m.querySelector("#c-tokens").appendChild(note("Needs the event log (--events)."));
    m.querySelector("#c-days").appendChild(act.days.length ? dayBars(act.days, "Members' requests per day")
      : note("No timelines in this report (analyze --timeline)."));
  }
  m.querySelector("#c-hours").appendChild(heat(act.hours, "Members' requests by hour of day"));
  const b = m.querySelector("#block-all");
  if (b) b.addEventListener("click", () => confirmAction(`Block all ${s.accounts} members of ${id}`, async (reason) => {
    const r = await api(`campaigns/${enc(id)}/block`, { method: "POST", body: JSON.stringify({ reason, confirm_count: s.accounts }) });
    return `Blocked ${r.blocked} accounts.`;
  }));
}

function timelineSection(a, thresholds) {
  const tl = a.timeline;
  if (!tl) return `<p class="muted">No timeline in this report: run <code>analyze --timeline</code>.</p>`;
  return `<table aria-label="Escalations"><thead><tr><th scope="col">When</th><th scope="col">Verdict</th><th class="num" scope="col">Risk</th><th class="num" scope="col">Requests</th><th scope="col">By</th><th scope="col">Reasons in force then</th></tr></thead><tbody>
    ${tl.escalations.map((e) => `<tr class="escalation-row"><td>${esc(fmtTime(e.ts))}</td><td>${verdict(e.verdict)}</td><td class="num">${fmtRisk(e.risk)}</td><td class="num">${fmtNum(e.requests)}</td><td>${esc(e.by)}</td><td>${reasonsHtml(e.reasons)}</td></tr>`).join("")}
    </tbody></table>`;
}

function actionForm(target, id) {
  if (!(session.mode === "live" && session.actor)) return "";
  return `<section class="card" aria-labelledby="h-act"><h3 id="h-act">Act on this ${target}</h3>
    <form class="actions" id="act">
      <label>Decision<select name="decision" aria-label="Decision"><option value="block">block</option><option value="allow">allow (allowlist; lifts a detector block)</option><option value="clear">clear (back to the detector's verdict)</option></select></label>
      <label>Reason (required)<input type="text" name="reason" required aria-label="Reason" aria-required="true"></label>
      <button type="submit" class="primary" id="act-submit">Apply</button>
    </form><div id="act-result" role="status"></div></section>`;
}

function wireAction(m, target, id) {
  const f = m.querySelector("#act");
  if (!f) return;
  f.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fd = new FormData(f);
    const out = m.querySelector("#act-result");
    try {
      const r = await api("actions", { method: "POST", body: JSON.stringify({ target, id, decision: fd.get("decision"), reason: fd.get("reason") }) });
      out.innerHTML = `<div class="notice">Done: ${esc(JSON.stringify(r))}</div>`;
    } catch (err) { out.innerHTML = `<div class="error" role="alert">${esc(err.message)}</div>`; }
  });
}

async function accountView(id) {
  const d = await api(`accounts/${enc(id)}`);
  const a = d.account;
  const m = setMain(`<h2>Account ${esc(a.account_id)}</h2>
    <div class="stats">
      <div class="stat">Verdict in force<b>${verdict(d.decision && d.decision.in_force || a.verdict)}</b></div>
      <div class="stat">Detector's verdict<b>${verdict(a.verdict)}</b></div>
      <div class="stat">Risk<b>${fmtRisk(a.risk)}</b></div>
      <div class="stat">Flagged at<b>${esc(fmtTime(a.flagged_at))}</b></div>
      <div class="stat">Campaign<b>${campLink(a.campaign_id)}</b></div>
    </div>
    ${d.decision ? `<p class="muted" id="decision">Operator decision: ${esc(JSON.stringify(d.decision))}</p>` : ""}
    ${actionForm("account", a.account_id)}
    <section class="card" aria-labelledby="h-tl"><h3 id="h-tl">Risk timeline</h3><div id="c-risk"></div>${timelineSection(a, d.thresholds)}</section>
    <div class="grid">
      <section class="card" aria-labelledby="h-days"><h3 id="h-days">Requests per day</h3><div id="c-days"></div></section>
      <section class="card" aria-labelledby="h-hours"><h3 id="h-hours">Requests by hour of day (UTC)</h3><div id="c-hours"></div></section>
    </div>
    <section class="card" aria-labelledby="h-reasons"><h3 id="h-reasons">Reasons (final)</h3>${reasonsHtml(a.reasons)}</section>
    <section class="card" aria-labelledby="h-keys"><h3 id="h-keys">Keys and streams</h3>
      ${d.keys.length ? `<table aria-label="Keys"><thead><tr><th scope="col">Key</th><th class="num" scope="col">Risk</th><th scope="col">Verdict</th><th class="num" scope="col">Requests</th><th scope="col">Top reasons</th></tr></thead><tbody>
      ${d.keys.map((k) => `<tr><td>${keyLink(k.key_id)}</td><td class="num">${fmtRisk(k.risk)}</td><td>${verdict(k.verdict)}</td><td class="num">${fmtNum(k.requests)}</td><td>${reasonsHtml(k.reasons.slice(0, 2))}</td></tr>`).join("")}</tbody></table>` : `<p class="muted">No key above allow.</p>`}
    </section>
    ${a.samples && a.samples.length ? `<section class="card"><h3>Redacted samples</h3>${a.samples.map((x) => `<pre>${esc(x)}</pre>`).join("")}</section>` : ""}`);
  if (a.timeline) {
    m.querySelector("#c-risk").appendChild(riskLine(a.timeline, d.thresholds));
    m.querySelector("#c-days").appendChild(dayBars(a.timeline.days, "Requests per day"));
    m.querySelector("#c-hours").appendChild(heat(a.timeline.hours, "Requests by hour of day"));
  } else {
    for (const s of ["#c-days", "#c-hours"]) m.querySelector(s).textContent = "No timeline in this report (analyze --timeline).";
  }
  wireAction(m, "account", a.account_id);
}

async function keyView(id) {
  const d = await api(`keys/${enc(id)}`);
  const k = d.key;
  const m = setMain(`<h2>Key ${esc(k.key_id)}</h2>
    <div class="stats">
      <div class="stat">Verdict<b>${verdict(k.verdict)}</b></div>
      <div class="stat">Risk<b>${fmtRisk(k.risk)}</b></div>
      <div class="stat">Requests<b>${fmtNum(k.requests)}</b></div>
      <div class="stat">Flagged at<b>${esc(fmtTime(k.flagged_at))}</b></div>
      <div class="stat">Account<b>${acctLink(k.account_id)}</b></div>
    </div>
    ${d.decision ? `<p class="muted">Operator decision: ${esc(JSON.stringify(d.decision))}</p>` : ""}
    ${actionForm("key", k.key_id)}
    <section class="card"><h3>Reasons</h3>${reasonsHtml(k.reasons)}</section>`);
  wireAction(m, "key", k.key_id);
}

async function searchView(r) {
  const q = r.params.get("q") || "";
  const d = await api(`search?q=${enc(q)}`);
  const sec = (title, list, row) => `<section class="card"><h3>${esc(title)} (${fmtNum(list.total ?? list.length)})</h3>${(list.items || list).length ? `<ul>${(list.items || list).map(row).join("")}</ul>` : `<p class="muted">None.</p>`}</section>`;
  setMain(`<h2>Search: ${esc(q)}</h2><div class="grid">
    ${sec("Accounts", d.accounts, (a) => `<li>${acctLink(a.account_id)} ${verdict(a.verdict)} ${fmtRisk(a.risk)}</li>`)}
    ${sec("Campaigns", d.campaigns, (c) => `<li>${campLink(c.campaign_id)}: ${fmtNum(c.accounts)} accounts</li>`)}
    ${sec("Keys", d.keys, (k) => `<li>${keyLink(k.key_id)} of ${acctLink(k.account_id)} ${verdict(k.verdict)}</li>`)}
    ${sec("Indicators", d.indicators, (i) => `<li>${esc(i.kind)} <a href="#/accounts?q=${enc(i.value)}">${esc(i.value)}</a> in ${campLink(i.campaign_id)} (${i.campaign_accounts} of ${i.all_accounts})</li>`)}
  </div>`);
}

async function auditView() {
  const d = await api("audit?limit=200");
  const rows = d.entries || d;
  setMain(`<h2>Audit log</h2><table aria-label="Audit log"><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">Why</th></tr></thead><tbody>
    ${(Array.isArray(rows) ? rows : []).map((e) => `<tr class="audit-row"><td>${esc(fmtTime(e.at || e.ts))}</td><td>${esc(e.actor || e.by)}</td><td>${esc(e.action || "")} ${esc(e.target || "")}</td><td>${esc(e.reason || "")}</td></tr>`).join("")}
    </tbody></table>`);
}

function confirmAction(text, run) {
  const dlg = document.createElement("dialog");
  dlg.setAttribute("aria-label", text);
  dlg.innerHTML = `<form method="dialog" id="confirm"><h3>${esc(text)}?</h3>
    <label>Reason (required)<input type="text" name="reason" required aria-label="Reason" aria-required="true"></label>
    <div class="actions"><button type="submit" class="danger" value="ok">Confirm</button><button type="button" id="cancel">Cancel</button></div>
    <div role="status" id="confirm-result"></div></form>`;
  document.body.appendChild(dlg);
  dlg.querySelector("#cancel").addEventListener("click", () => { dlg.close(); dlg.remove(); });
  dlg.querySelector("form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const reason = new FormData(e.target).get("reason");
    try { const msg = await run(reason); dlg.querySelector("#confirm-result").innerHTML = `<div class="notice">${esc(msg)}</div>`; }
    catch (err) { dlg.querySelector("#confirm-result").innerHTML = `<div class="error" role="alert">${esc(err.message)}</div>`; }
  });
  dlg.showModal();
  dlg.querySelector("input").focus();
}

function showLogin() {
  const m = setMain(`<section class="card login" aria-labelledby="h-login"><h2 id="h-login">Log in</h2>
    <form id="login"><label for="token">Admin token</label><input id="token" name="token" type="password" autocomplete="current-password" required>
    <button type="submit" class="primary">Log in</button></form><div id="login-error" role="alert"></div></section>`);
  m.querySelector("#token").focus();
  m.querySelector("#login").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const s = await api("login", { method: "POST", body: JSON.stringify({ token: new FormData(e.target).get("token") }) });
      session = s; showWho(); route();
    } catch (err) { m.querySelector("#login-error").innerHTML = `<div class="error">${esc(err.message)}</div>`; }
  });
}

function showWho() {
  const w = document.getElementById("who");
  document.getElementById("nav-audit").hidden = session.mode !== "live";
  document.getElementById("nav-exfil").hidden = !session.exfil;
  if (session.mode === "live") {
    w.innerHTML = session.actor ? `live · ${esc(session.actor)} <button type="button" id="logout">Log out</button>` : "live";
    const b = document.getElementById("logout");
    if (b) b.addEventListener("click", async () => { await api("logout", { method: "POST" }).catch(() => {}); session = { mode: "live" }; showWho(); showLogin(); });
  } else {
    w.textContent = "offline report (read-only)";
  }
  document.getElementById("source").textContent = session.source ? `Source: ${session.source}` : "";
}

async function route() {
  const r = parseHash();
  const [view, id] = r.parts;
  document.querySelectorAll("header nav a").forEach((a) => {
    if (a.dataset.nav === (view || "overview") || a.dataset.nav === `${view}s`) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  if (session.mode === "live" && !session.actor) { showLogin(); return; }
  try {
    switch (view) {
      case undefined: await overview(); break;
      case "campaigns": await campaignsView(r); break;
      case "campaign": await campaignView(id); break;
      case "accounts": await accountsView(r); break;
      case "account": await accountView(id); break;
      case "keys": await keysView(r); break;
      case "key": await keyView(id); break;
      case "exfil": await exfilView(r); break;
      case "principal": await principalView(id); break;
      case "search": await searchView(r); break;
      case "audit": await auditView(); break;
      default: setMain(`<p class="error">No page ${esc(view)}.</p>`);
    }
    document.body.dataset.ready = view || "overview";
  } catch (e) { fail(e); }
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("search").addEventListener("submit", (e) => {
    e.preventDefault();
    go("/search", new URLSearchParams({ q: document.getElementById("search-q").value }));
  });
  try { session = await api("session"); } catch (_) { session = { mode: "offline" }; }
  showWho();
  window.addEventListener("hashchange", route);
  route();
});
