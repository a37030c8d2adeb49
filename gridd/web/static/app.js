// gridd's live tangle view. Polls the JSON API (see gridd/web/api.py) and draws with
// plotly.js, which the server serves from the plotly PyPI package. Every string from the
// network (issuer ids, ...) is attacker-controlled: it goes into the page as textContent
// and into plotly labels escaped, never as HTML.
"use strict";

const POLL_MS = 1000;
const GL_ABOVE = 1500;  // more points than this: WebGL traces (SVG redraws take ~0.7 s at 5k)
const SIDE_MS = 3000;
const state = {
  rows: [], start: 0, cursor: null, count: 0, tips: new Set(), reference: new Set(),
  viewer: "", source: "self-reported", vetRatio: 0, window: 500, replay: null,
  lanes: new Map(), byId: new Map(), hovered: null, pinned: null, errors: 0, drawnKey: "",
  xaxis: "time",
};

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const short = (s, n = 12) => (s == null ? "" : String(s).slice(0, n));
const pct = (a) => (a == null ? "–" : (100 * a).toFixed(1) + " %");
const when = (t) => (t == null ? "–" : new Date(t * 1000).toLocaleTimeString());

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function accuracyOf(row) { return row.measured != null ? row.measured : row.reported; }

function laneOf(issuer) {
  if (!state.lanes.has(issuer)) state.lanes.set(issuer, state.lanes.size);
  return state.lanes.get(issuer);
}

function ingest(body) {
  if (state.cursor === null || body.start !== state.cursor) {
    if (state.cursor === null || body.start > state.cursor) {  // a fresh window
      state.rows = []; state.byId = new Map(); state.lanes = new Map(); state.start = body.start;
    }
  }
  for (const tx of body.transactions) {
    const known = state.byId.get(tx.id);
    if (known) { Object.assign(known, tx); continue; }
    state.byId.set(tx.id, tx);
    state.rows.push(tx);
    laneOf(tx.issuer);
  }
  const keep = state.window;
  if (state.rows.length > keep) {
    const drop = state.rows.splice(0, state.rows.length - keep);
    for (const tx of drop) state.byId.delete(tx.id);
    state.start = state.rows.length ? state.rows[0].i : body.cursor;
  }
  state.cursor = body.cursor;
  state.count = body.count;
  state.tips = new Set(body.tips);
  state.reference = new Set(body.reference);
  state.viewer = body.viewer;
  state.source = body.accuracy_source;
  state.vetRatio = body.vet_ratio;
  $("genesis").textContent = "genesis " + short(body.genesis, 16);
  $("viewer").textContent = short(body.viewer, 20);
  return body.more;
}

async function refreshMeasured() {
  // Scores arrive after the rows (an observer scores new transactions off its loop):
  // re-read the visible window now and then so colours move from reported to measured.
  if (!state.rows.length) return;
  const body = await getJSON(`/api/tangle?since=${state.rows[0].i}&limit=${state.rows.length}`);
  for (const tx of body.transactions) {
    const known = state.byId.get(tx.id);
    if (known) known.measured = tx.measured;
  }
  state.drawnKey = "";
}

function visibleRows() {
  const n = state.replay == null ? state.rows.length : Math.min(state.replay, state.rows.length);
  return state.rows.slice(0, n);
}

function vetted(row) {
  // as gridd.web.feed.vetted_out: clearly worse, on the viewer's data, than its best parent
  if (row.measured == null || !row.p.length) return false;
  let best = null;
  for (const i of row.p) {
    const parent = state.rows[i - state.start];
    if (parent && parent.measured != null && (best == null || parent.measured > best)) best = parent.measured;
  }
  return best != null && row.measured < state.vetRatio * best;
}

function colourSource(rows) {
  const measured = rows.filter((r) => r.measured != null).length;
  if (measured === rows.length) return "validation";
  return measured ? "validation where measured,<br>else self-reported" : "self-reported";
}

function drawTangle() {
  const rows = visibleRows();
  const key = [rows.length, state.cursor, [...state.tips].join(), [...state.reference].join(),
    state.hovered, state.pinned, state.vetRatio, state.xaxis, rows.filter((r) => r.measured != null).length].join("|");
  if (key === state.drawnKey) return;
  state.drawnKey = key;
  const pos = new Map();
  const x = [], y = [], color = [], size = [], lineColor = [], lineWidth = [], symbol = [],
    custom = [];
  for (const r of rows) {
    const lane = state.lanes.get(r.issuer);
    const t = state.xaxis === "height" ? r.h : new Date(r.t * 1000);
    pos.set(r.i, [t, lane]);
    x.push(t); y.push(lane);
    const acc = accuracyOf(r);
    color.push(acc == null ? 0 : acc);
    const isRef = state.reference.has(r.id);
    const isTip = state.tips.has(r.id);
    const bad = vetted(r);
    size.push(isRef ? 16 : isTip ? 13 : 10);
    lineColor.push(bad ? "#e5484d" : isRef ? "#f5a524" : isTip ? "#111111" : "rgba(40,50,70,0.35)");
    lineWidth.push(bad ? 2.5 : isRef ? 3 : isTip ? 2 : 0.8);
    symbol.push(bad ? "x" : r.own ? "square" : "circle");
    custom.push([esc(short(r.id, 16)), esc(short(r.issuer, 20)), when(r.t),
      r.measured != null ? pct(r.measured) + " (validation)" :
        r.reported != null ? pct(r.reported) + " (self-reported)" : "–",
      r.parents.length, esc(short(r.cid, 24))]);
  }
  const ex = [], ey = [];
  for (const r of rows) {
    const a = pos.get(r.i);
    for (const p of r.p) {
      const b = pos.get(p);
      if (!b) continue;
      ex.push(a[0], b[0], null); ey.push(a[1], b[1], null);
    }
  }
  const hx = [], hy = [];
  const focus = state.pinned || state.hovered;
  const focusRow = focus && state.byId.get(focus);
  if (focusRow && pos.has(focusRow.i)) {
    const a = pos.get(focusRow.i);
    for (const p of focusRow.p) { const b = pos.get(p); if (b) { hx.push(a[0], b[0], null); hy.push(a[1], b[1], null); } }
  }
  const ax = [], ay = [];
  if (focusRow) {
    for (const r of rows) {
      if (r.p.includes(focusRow.i)) { const b = pos.get(r.i), a = pos.get(focusRow.i); ax.push(b[0], a[0], null); ay.push(b[1], a[1], null); }
    }
  }
  const lanes = [...state.lanes.keys()];
  const kind = rows.length > GL_ABOVE ? "scattergl" : "scatter";
  const traces = [
    { type: kind, mode: "lines", x: ex, y: ey, hoverinfo: "skip", showlegend: false,
      line: { color: "rgba(90,100,125,0.28)", width: 1 } },
    { type: kind, mode: "lines", x: hx, y: hy, hoverinfo: "skip", showlegend: false,
      line: { color: "#f08c00", width: 3 }, name: "approves" },
    { type: kind, mode: "lines", x: ax, y: ay, hoverinfo: "skip", showlegend: false,
      line: { color: "#2f6fde", width: 3 }, name: "approved by" },
    { type: kind, mode: "markers", x, y, customdata: custom, showlegend: false,
      marker: { color, size, symbol, cmin: 0, cmax: 1, colorscale: "Viridis",
        line: { color: lineColor, width: lineWidth },
        colorbar: { title: { text: "accuracy<br>(" + colourSource(rows) + ")", side: "right" },
          thickness: 12, len: 0.9 } },
      hovertemplate: "<b>%{customdata[0]}</b><br>issuer %{customdata[1]}<br>%{customdata[2]}" +
        "<br>accuracy %{customdata[3]}<br>parents %{customdata[4]}<br>weights %{customdata[5]}<extra></extra>" },
  ];
  const layout = {
    margin: { l: 150, r: 10, t: 10, b: 40 }, hovermode: "closest", uirevision: state.xaxis,
    xaxis: { title: { text: state.xaxis === "height" ? "height (longest path to the genesis)" :
      "time the transaction was issued" }, gridcolor: "#eef0f5", autorange: true },
    yaxis: { tickvals: lanes.map((_, i) => i), ticktext: lanes.map((s) => esc(short(s, 18))),
      range: [-0.7, Math.max(lanes.length - 0.3, 0.7)], gridcolor: "#eef0f5", zeroline: false },
    paper_bgcolor: "#fff", plot_bgcolor: "#fbfcfe", font: { size: 11 },
  };
  Plotly.react("tangle", traces, layout, { displaylogo: false, responsive: true });
  const el = $("tangle");
  el.dataset.drawn = String(rows.length);
  el.dataset.count = String(state.count);
}

function showDetails(row) {
  const list = $("details-list");
  list.replaceChildren();
  $("details-hint").hidden = true;
  const approvers = state.rows.filter((r) => r.p.includes(row.i)).map((r) => short(r.id, 12));
  const items = [
    ["id", row.id], ["issuer", row.issuer + (row.own ? " (this viewer)" : "")],
    ["time", new Date(row.t * 1000).toLocaleString() + (row.t_claimed == null ? "" :
      ` (claims ${row.t_claimed}: drawn at the nearest sane time)`)], ["height", row.h],
    ["parents", row.parents.map((p) => short(p, 12)).join(", ") || "none (genesis)"],
    ["approved by", approvers.join(", ") || "nobody yet (a tip)"],
    ["accuracy (validation)", pct(row.measured)], ["accuracy (self-reported)", pct(row.reported)],
    ["client epochs", row.epochs == null ? "–" : row.epochs],
    ["weights CID", row.cid],
    ["status", [state.tips.has(row.id) ? "tip" : "", state.reference.has(row.id) ? "reference" : "",
      vetted(row) ? "vetted out" : ""].filter(Boolean).join(", ") || "approved"],
  ];
  for (const [k, v] of items) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = String(v);
    list.append(dt, dd);
  }
  $("details").dataset.tx = row.id;
}

function hookTangle() {
  const el = $("tangle");
  el.on("plotly_hover", (ev) => {
    const pt = ev.points.find((p) => p.curveNumber === 3);
    if (!pt) return;
    const row = visibleRows()[pt.pointNumber];
    if (!row) return;
    state.hovered = row.id;
    showDetails(row);
    drawTangle();
  });
  el.on("plotly_click", (ev) => {
    const pt = ev.points.find((p) => p.curveNumber === 3);
    if (!pt) return;
    const row = visibleRows()[pt.pointNumber];
    state.pinned = row && state.pinned !== row.id ? row.id : null;
    if (row) showDetails(row);
    drawTangle();
  });
  el.on("plotly_unhover", () => { state.hovered = null; drawTangle(); });
}

function updateReplay() {
  const slider = $("replay");
  const n = state.rows.length;
  const live = state.replay == null;
  slider.max = String(Math.max(n, 1));
  if (live) slider.value = slider.max;
  $("replay-text").textContent = live ? `live (${n})` : `${state.replay} / ${n}`;
}

async function pollTangle() {
  if (state.busy) return;
  state.busy = true;
  try {
    let more = true;
    while (more) {
      const q = state.cursor === null ? `window=${state.window}` : `since=${state.cursor}`;
      more = ingest(await getJSON(`/api/tangle?${q}`));
    }
    setLive(true);
    updateReplay();
    drawTangle();
    $("t-count").textContent = state.count.toLocaleString();
    $("t-tips").textContent = state.tips.size.toLocaleString();
  } catch (e) {
    setLive(false, e);
  } finally {
    state.busy = false;
  }
}

function setLive(ok, err) {
  $("live-dot").className = "dot " + (ok ? "ok" : "bad");
  $("live-text").textContent = ok ? "live" : "disconnected";
  if (!ok) console.warn("gridd view: " + (err && err.message));
}

function drawAccuracy(acc, rows) {
  const traces = [];
  const byIssuer = new Map();
  for (const r of rows) {
    const a = accuracyOf(r);
    if (a == null || r.parents.length === 0) continue;
    if (!byIssuer.has(r.issuer)) byIssuer.set(r.issuer, { x: [], y: [] });
    const s = byIssuer.get(r.issuer); s.x.push(new Date(r.t * 1000)); s.y.push(a);
  }
  const issuers = [...byIssuer.entries()].sort((a, b) => b[1].x.length - a[1].x.length);
  issuers.slice(0, 10).forEach(([name, s]) => traces.push({
    type: "scatter", mode: "markers", x: s.x, y: s.y, name: esc(short(name, 12)),
    marker: { size: 5, opacity: 0.55 }, hovertemplate: "%{y:.3f}<extra>" + esc(short(name, 12)) + "</extra>" }));
  const c = acc.consensus;
  traces.push({ type: "scatter", mode: "lines", x: c.map((p) => new Date(p.time * 1000)),
    y: c.map((p) => p.accuracy), name: "consensus (" + esc(acc.source) + ")",
    line: { color: "#16213a", width: 3 } });
  Plotly.react("accuracy", traces, {
    margin: { l: 45, r: 10, t: 10, b: 35 }, yaxis: { range: [0, 1], title: { text: "accuracy" } },
    legend: { orientation: "h", y: -0.2, font: { size: 10 } }, uirevision: "acc",
    paper_bgcolor: "#fff", plot_bgcolor: "#fbfcfe", font: { size: 11 },
  }, { displaylogo: false, responsive: true });
}

function drawLab(acc) {
  if (!acc.lab_test.length && !acc.baseline.length) return;
  $("lab-card").hidden = false;
  const traces = [
    { type: "scatter", mode: "lines", name: "gridd consensus (held-out test)",
      x: acc.lab_test.map((p) => p.client_epochs), y: acc.lab_test.map((p) => p.accuracy),
      line: { color: "#2f6fde", width: 3 } },
  ];
  if (acc.baseline.length) traces.push({ type: "scatter", mode: "lines+markers",
    name: esc(acc.lab.baseline || "baseline"), x: acc.baseline.map((p) => p.client_epochs),
    y: acc.baseline.map((p) => p.accuracy), line: { color: "#f08c00", dash: "dash", width: 2 },
    marker: { size: 4 } });
  Plotly.react("lab", traces, {
    margin: { l: 45, r: 10, t: 10, b: 40 }, uirevision: "lab",
    xaxis: { title: { text: "client-epochs (local epochs summed over peers)" } },
    yaxis: { range: [0, 1], title: { text: "test accuracy" } },
    legend: { orientation: "h", y: -0.25, font: { size: 10 } },
    paper_bgcolor: "#fff", plot_bgcolor: "#fbfcfe", font: { size: 11 },
  }, { displaylogo: false, responsive: true });
  const last = acc.lab_test[acc.lab_test.length - 1];
  if (last) {
    $("t-test").textContent = pct(last.accuracy);
    $("t-test-note").textContent = `after ${last.client_epochs} client-epochs`;
  }
}

function cell(tr, text, num) {
  const td = document.createElement("td");
  td.textContent = text == null ? "–" : String(text);
  if (num) td.className = "num";
  tr.append(td);
}

function drawPeers(body) {
  const tbody = $("peers").querySelector("tbody");
  tbody.replaceChildren();
  for (const p of body.peers) {
    const tr = document.createElement("tr");
    cell(tr, short(p.peer, 20) + (p.peer === state.viewer ? " (viewer)" : ""));
    cell(tr, p.transactions, true);
    cell(tr, p.last_tx ? short(p.last_tx, 12) + " · " + when(p.last_time) : null);
    cell(tr, p.last_accuracy == null ? null : pct(p.last_accuracy), true);
    cell(tr, p.vetted_out, true);
    cell(tr, p.seen == null ? null : when(p.seen));
    tbody.append(tr);
  }
  const reasons = Object.entries(body.rejected_by_reason);
  const total = reasons.reduce((s, [, v]) => s + v, 0);
  $("t-peers").textContent = body.count.toLocaleString();
  $("t-rej").textContent = total.toLocaleString();
  $("t-rej-why").textContent = reasons.map(([k, v]) => `${k} ${v}`).join(", ");
  $("rejected-line").textContent = total ? "Rejected by reason: " +
    reasons.map(([k, v]) => `${k}: ${v}`).join(", ") : "Nothing rejected so far.";
}

function drawJobs(body) {
  const box = $("jobs");
  const names = Object.keys(body.sections);
  if (!names.length) return;
  box.replaceChildren();
  for (const name of names) {
    const sec = body.sections[name];
    const div = document.createElement("div"); div.className = "jobs-section";
    const h = document.createElement("h3");
    h.textContent = `${name.replace(/_/g, " ")} (${sec.count ?? 0})`;
    div.append(h);
    if (sec.error) { const p = document.createElement("p"); p.className = "muted"; p.textContent = sec.error; div.append(p); }
    if (sec.rows.length) {
      const cols = Object.keys(sec.rows[0]).slice(0, 10);
      const table = document.createElement("table");
      const head = document.createElement("tr");
      for (const c of cols) { const th = document.createElement("th"); th.textContent = c; head.append(th); }
      table.append(head);
      for (const r of sec.rows.slice(0, 50)) {
        const tr = document.createElement("tr");
        for (const c of cols) {
          const v = r[c];
          cell(tr, typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(4) : v, typeof v === "number");
        }
        table.append(tr);
      }
      div.append(table);
    } else if (!sec.error) {
      const p = document.createElement("p"); p.className = "muted"; p.textContent = "none yet"; div.append(p);
    }
    box.append(div);
  }
}

async function pollSide() {
  try {
    const [summary, peers, acc, jobs] = await Promise.all([
      getJSON("/api/summary"), getJSON("/api/peers"), getJSON("/api/accuracy"), getJSON("/api/jobs")]);
    document.title = `gridd · ${summary.title || "tangle"} · ${summary.transactions} transactions`;
    $("t-acc").textContent = pct(summary.consensus_accuracy);
    $("t-acc-src").textContent = summary.consensus_accuracy == null ? "" :
      (summary.accuracy_source === "validation" ? "on the viewer's validation data" : "issuers' own figures");
    drawPeers(peers);
    drawAccuracy(acc, state.rows);
    drawLab(acc);
    drawJobs(jobs);
    await refreshMeasured();
    drawTangle();
  } catch (e) {
    setLive(false, e);
  }
}

function init() {
  Plotly.newPlot("tangle", [], {}, { displaylogo: false, responsive: true });
  hookTangle();
  $("window").addEventListener("change", (ev) => {
    state.window = Number(ev.target.value); state.cursor = null; state.replay = null;
    pollTangle();
  });
  $("xaxis").addEventListener("change", (ev) => {
    state.xaxis = ev.target.value;
    Plotly.relayout("tangle", { "xaxis.autorange": true }).then(drawTangle);
  });
  $("replay").addEventListener("input", (ev) => {
    const v = Number(ev.target.value);
    state.replay = v >= state.rows.length ? null : v;
    updateReplay(); drawTangle();
  });
  pollTangle().then(pollSide);
  setInterval(pollTangle, POLL_MS);
  setInterval(pollSide, SIDE_MS);
}

init();
