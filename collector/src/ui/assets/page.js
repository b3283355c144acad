// The live page: one EventSource on /ui/feed (the admin key travels as the cookie or Basic
// credentials the page was loaded with). Snapshots redraw the tables and charts; tail and dead
// items are buffered and drawn at most every 300 ms.
"use strict";
const $ = (s) => document.querySelector(s);
const HISTORY = 300;        // snapshots kept for the charts (5 minutes)
const TAIL_SHOWN = 200;     // rows shown in the tail
const DEAD_SHOWN = 100;
let snaps = [];             // recent snapshots, oldest first
let tailItems = [];
let deadItems = [];
let paused = false;
let dirty = false;
let source = null;
let unsettled = {};         // table -> snapshots in a row with in-flight left and no backlog

function sum(m) { return Object.values(m || {}).reduce((a, b) => a + b, 0); }
function fmt(n) { return n == null ? "" : Number(n).toLocaleString("en"); }
function byReason(m) {
  const e = Object.entries(m || {});
  return e.length ? e.map(([k, v]) => k + ": " + fmt(v)).join(", ") : "0";
}
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}

// Rates per second of `pick(snapshot)` over the snapshots kept: one value per interval.
function rates(pick) {
  const out = [];
  for (let i = 1; i < snaps.length; i++) {
    const a = pick(snaps[i - 1]), b = pick(snaps[i]);
    const dt = (snaps[i].t - snaps[i - 1].t) / 1000;
    out.push(a == null || b == null || dt <= 0 ? 0 : Math.max(0, (b - a) / dt));
  }
  return out;
}
function lastRate(pick) {
  const r = rates(pick);
  return r.length ? r[r.length - 1] : 0;
}
// A small chart: accepted/s (blue) and delivered/s (green) over the kept snapshots.
function spark(acc, del) {
  const w = 160, h = 28;
  const max = Math.max(1, ...acc, ...del);
  // At least a minute wide, so a young collector's first seconds do not fill the chart.
  const span = Math.max(60, acc.length, del.length) - 1;
  const line = (v) => v.map((y, i) =>
    ((i / span) * w).toFixed(1) + "," + (h - 1 - (y / max) * (h - 2)).toFixed(1)).join(" ");
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  for (const [cls, v] of [["a", acc], ["d", del]]) {
    const p = document.createElementNS(ns, "polyline");
    p.setAttribute("class", cls);
    p.setAttribute("points", line(v));
    svg.append(p);
  }
  const t = document.createElementNS(ns, "title");
  t.textContent = `max ${max.toFixed(1)}/s; blue accepted, green delivered`;
  svg.append(t);
  return svg;
}

function drawSnapshot() {
  const s = snaps[snaps.length - 1];
  if (!s) return;
  drawSources(s);
  $("#meta").textContent = `generation ${s.generation} · reloads ok ${s.reloads.ok}, failed ${s.reloads.error}` +
    ` · backlog ${bytes(s.totals.backlog_bytes)} · ${new Date(s.t).toLocaleTimeString()}`;
  const dBody = $("#dests tbody");
  dBody.replaceChildren();
  for (const d of s.destinations) {
    const pick = (f) => (x) => { const y = x.destinations.find((q) => q.name === d.name); return y && y[f]; };
    dBody.append(el("tr", { "data-dest": d.name },
      el("td", {}, d.name),
      el("td", { class: "rate-accepted" }, lastRate(pick("accepted")).toFixed(1)),
      el("td", { class: "rate-delivered" }, lastRate(pick("delivered")).toFixed(1)),
      el("td", { class: "accepted" }, fmt(d.accepted)),
      el("td", { class: "delivered" }, fmt(d.delivered)),
      el("td", { class: "rejected" }, byReason(d.rejected)),
      el("td", { class: "dropped" + (sum(d.dropped) ? " bad" : "") }, byReason(d.dropped)),
      el("td", { class: "in-flight" }, fmt(d.in_flight)),
      el("td", { class: "backlog" }, bytes(d.backlog_bytes)),
      el("td", { class: "health " + (d.healthy ? "ok" : "bad") }, d.healthy ? "healthy" : "failing"),
      el("td", { class: "text last-error" }, d.last_error || ""),
      el("td", {}, spark(rates(pick("accepted")), rates(pick("delivered"))))));
  }
  const tBody = $("#tables tbody");
  tBody.replaceChildren();
  const backlog = s.totals.backlog_bytes;
  const select = $("#tail-table");
  for (const t of s.tables) {
    const pick = (f) => (x) => { const y = x.tables.find((q) => q.table === t.table); return y && y[f]; };
    // The identity holds by construction unless outcomes outrun acceptances (in flight < 0),
    // or events stay in flight with nothing left in the log (unaccounted).
    unsettled[t.table] = t.in_flight !== 0 && backlog === 0 ? (unsettled[t.table] || 0) + 1 : 0;
    let identity = el("span", { class: "ok" }, "holds");
    if (t.in_flight < 0) {
      identity = el("span", { class: "bad" }, `off by ${fmt(-t.in_flight)} (more outcomes than accepted)`);
    } else if (unsettled[t.table] >= 5) {
      identity = el("span", { class: "bad" }, `${fmt(t.in_flight)} unaccounted (log empty)`);
    }
    tBody.append(el("tr", { "data-table": t.table },
      el("td", {}, t.table),
      el("td", { class: "rate-accepted" }, lastRate(pick("accepted")).toFixed(1)),
      el("td", { class: "rate-delivered" }, lastRate(pick("delivered")).toFixed(1)),
      el("td", { class: "accepted" }, fmt(t.accepted)),
      el("td", { class: "delivered" }, fmt(t.delivered),
        ...Object.entries(t.delivered_by_destination || {}).map(([d, n]) =>
          el("div", { class: "note" }, `${d}: ${fmt(n)}`))),
      el("td", { class: "rejected" }, byReason(t.rejected)),
      el("td", { class: "dropped" + (sum(t.dropped) ? " bad" : "") }, byReason(t.dropped)),
      el("td", { class: "in-flight" }, fmt(t.in_flight)),
      el("td", { class: "identity" }, identity),
      el("td", { class: "sdk-dropped" + (sum(t.sdk_dropped) ? " bad" : "") }, byReason(t.sdk_dropped)),
      el("td", {}, spark(rates(pick("accepted")), rates(pick("delivered"))))));
    if (![...select.options].some((o) => o.value === t.table)) {
      select.append(el("option", { value: t.table }, t.table));
    }
  }
}

// SDK processes' own reports, per app and host: drops before the collector stand out.
function drawSources(s) {
  const body = $("#sources tbody");
  body.replaceChildren(...(s.sources || []).map((x) =>
    el("tr", { "data-app": x.app, "data-host": x.host },
      el("td", {}, x.app),
      el("td", {}, x.host),
      el("td", { class: "processes" }, fmt(x.processes)),
      el("td", { class: "accepted" }, fmt(x.accepted)),
      el("td", { class: "delivered" }, fmt(x.delivered)),
      el("td", { class: "rejected" }, byReason(x.rejected)),
      el("td", { class: "dropped" + (sum(x.dropped) ? " bad" : "") }, byReason(x.dropped)),
      el("td", { class: "spooled" }, fmt(x.spooled)),
      el("td", { class: "queued" }, fmt(x.queue_events)))));
}

function drawItems() {
  dirty = false;
  const ol = $("#tail");
  ol.replaceChildren(...tailItems.slice(-TAIL_SHOWN).reverse().map((it) =>
    el("li", { "data-table": it.table },
      el("span", { class: "tbl" }, new Date(it.t).toLocaleTimeString() + " " + it.table),
      typeof it.row === "string" ? it.row + " …(cut)" : JSON.stringify(it.row))));
  const tb = $("#dead tbody");
  tb.replaceChildren(...deadItems.slice(-DEAD_SHOWN).reverse().map((d) =>
    el("tr", { "data-reason": d.reason },
      el("td", {}, new Date(d.t).toLocaleTimeString()),
      el("td", {}, d.table),
      el("td", { class: "reason" }, d.reason),
      el("td", { class: "field" }, d.field || ""),
      el("td", { class: "text" }, d.error),
      el("td", {}, d.at))));
}

function connect() {
  if (source) source.close();
  const table = $("#tail-table").value;
  const filter = $("#tail-filter").value.trim();
  const q = new URLSearchParams();
  if (table) q.append("table", table);
  if (table && filter) q.append("filter." + table, filter);
  $("#tail-note").textContent = filter && !table ? "choose a table for the filter" : "";
  snaps = []; tailItems = []; deadItems = []; dirty = true;
  source = new EventSource("/ui/feed" + (q.toString() ? "?" + q : ""));
  source.onopen = () => { $("#status").textContent = "live"; $("#status").className = "status live"; };
  source.onerror = () => { $("#status").textContent = "disconnected, retrying"; $("#status").className = "status down"; };
  source.addEventListener("snapshot", (e) => {
    snaps.push(JSON.parse(e.data));
    if (snaps.length > HISTORY) snaps.shift();
    drawSnapshot();
  });
  source.addEventListener("tail", (e) => {
    if (paused) return;
    tailItems.push(JSON.parse(e.data));
    if (tailItems.length > TAIL_SHOWN * 2) tailItems = tailItems.slice(-TAIL_SHOWN);
    dirty = true;
  });
  source.addEventListener("dead", (e) => {
    deadItems.push(JSON.parse(e.data));
    if (deadItems.length > DEAD_SHOWN * 2) deadItems = deadItems.slice(-DEAD_SHOWN);
    dirty = true;
  });
  source.addEventListener("lagged", (e) => {
    $("#tail-note").textContent = `skipped ${JSON.parse(e.data).missed} items (this page read too slowly)`;
  });
}

$("#tail-apply").onclick = connect;
$("#tail-filter").onkeydown = (e) => { if (e.key === "Enter") connect(); };
$("#tail-pause").onclick = () => {
  paused = !paused;
  $("#tail-pause").textContent = paused ? "resume" : "pause";
};
setInterval(() => { if (dirty) drawItems(); }, 300);
connect();
