// Vigil console: plain JavaScript, no build step. Every call goes to the /v1 API with the sign-in cookie;
// changes also send the X-Vigil-Console header (the API's CSRF check).
"use strict";

const CONSOLE_HEADER = { "X-Vigil-Console": "1" };

async function api(method, url, body) {
  const headers = body === undefined ? { ...CONSOLE_HEADER } : { ...CONSOLE_HEADER, "Content-Type": "application/json" };
  const r = await fetch(url, { method, headers, credentials: "same-origin",
                               body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); }
  const data = await r.json().catch(() => null);
  if (!r.ok) {
    const detail = data && data.detail;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail || r.statusText));
  }
  return data;
}

// ---- latest frames -------------------------------------------------------------------------------------------
function refreshFrames() {
  for (const img of document.querySelectorAll("img.live-frame")) {
    const probe = new Image();
    probe.onload = () => { img.src = probe.src; img.parentElement.classList.add("has"); };
    probe.onerror = () => img.parentElement.classList.remove("has");
    probe.src = img.dataset.src + "?t=" + Date.now();
  }
}

// ---- charts ----------------------------------------------------------------------------------------------------
function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
}

// Draw score points [{t_ns, score, threshold}] (and alert spans [[start_ns, end_ns]]) into a canvas.
function drawSeries(canvas, points, spans, axes) {
  const { ctx, w, h } = fitCanvas(canvas);
  const pad = axes ? { l: 36, r: 8, t: 8, b: 20 } : { l: 1, r: 1, t: 3, b: 3 };
  if (!points.length) {
    ctx.fillStyle = "#8d99a8"; ctx.font = "12px system-ui"; ctx.fillText("no scores yet", pad.l + 4, h / 2);
    return;
  }
  const t0 = points[0].t_ns, t1 = Math.max(points[points.length - 1].t_ns, t0 + 1);
  const values = points.flatMap(p => p.threshold == null ? [p.score] : [p.score, p.threshold]);
  const lo = Math.min(0, ...values), hi = Math.max(...values) * 1.1 || 1;
  const x = t => pad.l + (w - pad.l - pad.r) * (t - t0) / (t1 - t0);
  const y = v => h - pad.b - (h - pad.t - pad.b) * (v - lo) / (hi - lo);
  ctx.fillStyle = "rgba(255,93,93,0.25)";
  for (const [a, b] of spans || []) {
    if (b >= t0 && a <= t1) { ctx.fillRect(x(Math.max(a, t0)), pad.t, Math.max(2, x(Math.min(b, t1)) - x(Math.max(a, t0))), h - pad.t - pad.b); }
  }
  line(ctx, points, p => p.threshold, x, y, "#f5b942", [4, 3]);
  line(ctx, points, p => p.score, x, y, "#4ea1ff", []);
  if (axes) {
    ctx.fillStyle = "#8d99a8"; ctx.font = "11px system-ui";
    ctx.fillText(hi.toFixed(1), 2, pad.t + 9); ctx.fillText(lo.toFixed(1), 2, h - pad.b);
    ctx.fillText(new Date(t0 / 1e6).toLocaleTimeString(), pad.l, h - 5);
    const end = new Date(t1 / 1e6).toLocaleTimeString();
    ctx.fillText(end, w - pad.r - ctx.measureText(end).width, h - 5);
  }
}

function line(ctx, points, value, x, y, color, dash) {
  ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.setLineDash(dash); ctx.beginPath();
  let started = false;
  for (const p of points) {
    const v = value(p);
    if (v == null) { continue; }
    if (started) { ctx.lineTo(x(p.t_ns), y(v)); } else { ctx.moveTo(x(p.t_ns), y(v)); started = true; }
  }
  ctx.stroke(); ctx.setLineDash([]);
}

async function refreshSparks() {
  for (const canvas of document.querySelectorAll("canvas.spark")) {
    const cam = encodeURIComponent(canvas.dataset.camera);
    try { drawSeries(canvas, await api("GET", `/v1/cameras/${cam}/timeline?limit=${canvas.dataset.points}`), [], false); }
    catch (e) { /* a camera without a timeline keeps its last drawing */ }
  }
}

async function refreshWall() {
  let cameras;
  try { cameras = await api("GET", "/v1/cameras"); } catch (e) { return; }
  for (const c of cameras) {
    const card = document.querySelector(`.cam[data-camera="${CSS.escape(c.camera_id)}"]`);
    if (!card) { continue; }
    card.className = "cam status-" + (c.status || "unknown");
    card.querySelector('[data-field="status"]').textContent = c.status || "unknown";
    card.querySelector('[data-field="score"]').textContent = "score " + (c.score == null ? "–" : c.score.toFixed(2));
    card.querySelector('[data-field="threshold"]').textContent = "threshold " + (c.threshold == null ? "–" : c.threshold.toFixed(2));
  }
}

// ---- alert cards -----------------------------------------------------------------------------------------------
function placeBoxes(root) {
  for (const card of root.querySelectorAll(".card[data-box]")) {
    const box = card.dataset.box.split(",").map(Number);
    if (box.length !== 4 || box.some(isNaN)) { continue; }
    for (const el of card.querySelectorAll(".box")) {
      el.style.left = (box[0] * 100) + "%"; el.style.top = (box[1] * 100) + "%";
      el.style.width = ((box[2] - box[0]) * 100) + "%"; el.style.height = ((box[3] - box[1]) * 100) + "%";
      el.classList.add("placed");
    }
  }
}

function markLabel(card) {
  const labels = card.querySelector(".labels");
  for (const b of labels.querySelectorAll("button.lbl")) { b.classList.toggle("on", b.dataset.kind === labels.dataset.label); }
}

async function onLabelClick(event) {
  const button = event.target.closest("button.lbl");
  if (!button || button.disabled) { return; }
  const card = button.closest(".card"), labels = card.querySelector(".labels"), state = labels.querySelector(".label-state");
  state.textContent = "saving…";
  try {
    const stored = await api("PUT", `/v1/alerts/${encodeURIComponent(card.dataset.alertId)}/label`, { kind: button.dataset.kind });
    labels.dataset.label = stored.kind;
    state.innerHTML = "";
    state.append("labelled ", Object.assign(document.createElement("b"), { textContent: stored.kind }));
    markLabel(card);
  } catch (e) { state.textContent = "not saved: " + e.message; state.classList.add("error"); }
}

async function fetchCard(alertId) {
  const r = await fetch(`/console/cards/${encodeURIComponent(alertId)}`, { credentials: "same-origin" });
  if (!r.ok) { return null; }
  const holder = document.createElement("div");
  holder.innerHTML = await r.text();  // rendered by the server's auto-escaping template
  return holder.firstElementChild;
}

// Insert or refresh an alert's card; a playing clip is never interrupted (its card is refreshed once paused).
async function upsertCard(alertId, camera) {
  const queue = document.getElementById("queue");
  if (!queue || (queue.dataset.camera && queue.dataset.camera !== camera)) { return; }
  const old = document.getElementById("alert-" + alertId);
  const video = old && old.querySelector("video");
  if (video && !video.paused) { video.addEventListener("pause", () => upsertCard(alertId, camera), { once: true }); return; }
  const card = await fetchCard(alertId);
  if (!card) { return; }
  const current = document.getElementById("alert-" + alertId);
  if (current) {
    if (current.dataset.evidence === card.dataset.evidence) {  // same evidence: keep the media, update the rest
      current.className = card.className;
      current.querySelector(".meta").replaceWith(card.querySelector(".meta"));
      markLabel(current);
      return;
    }
    current.replaceWith(card);
  } else {
    card.classList.add("fresh");
    queue.prepend(card);
    const empty = document.getElementById("empty");
    if (empty) { empty.remove(); }
  }
  placeBoxes(card.parentElement); markLabel(card);
}

function followEvents(onAlert, onEvidence) {
  const live = document.getElementById("live");
  const source = new EventSource("/v1/events");
  source.onopen = () => live && live.classList.add("on");
  source.onerror = () => live && live.classList.remove("on");  // the browser reconnects by itself
  source.addEventListener("alert", e => { try { onAlert(JSON.parse(e.data)); } catch (err) { console.warn(err); } });
  source.addEventListener("evidence", e => { try { onEvidence(JSON.parse(e.data).alert_id); } catch (err) { console.warn(err); } });
}

// ---- camera page -----------------------------------------------------------------------------------------------
async function refreshTimeline() {
  const canvas = document.getElementById("timeline");
  const cam = encodeURIComponent(canvas.dataset.camera), span = document.getElementById("span").value;
  try {
    const [points, page] = await Promise.all([
      api("GET", `/v1/cameras/${cam}/timeline?since=${Math.round(span / 60)}m&limit=10000`),
      api("GET", `/v1/alerts?camera=${cam}&since=${Math.round(span / 60)}m&limit=200`),
    ]);
    const spans = page.items.map(it => [it.alert.start_ns, it.alert.end_ns || Date.now() * 1e6]);
    drawSeries(canvas, points, spans, true);
  } catch (e) { /* keep the last drawing */ }
}

// ---- zone editor -----------------------------------------------------------------------------------------------
function zoneEditor(root) {
  const zones = JSON.parse(root.dataset.zones || "{}");
  const state = { include: zones.include || [], exclude: zones.exclude || [], current: [] };
  const canvas = document.getElementById("zone-canvas"), img = document.getElementById("zone-frame");
  const kind = () => root.querySelector('input[name="kind"]:checked').value;
  const draw = () => {
    const { ctx, w, h } = fitCanvas(canvas);
    const path = (pts, close) => { ctx.beginPath(); pts.forEach(([px, py], i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, px * w, py * h)); if (close) { ctx.closePath(); } };
    for (const [k, fill, stroke] of [["include", "rgba(62,207,142,0.25)", "#3ecf8e"], ["exclude", "rgba(255,93,93,0.3)", "#ff5d5d"]]) {
      for (const poly of state[k]) { path(poly, true); ctx.fillStyle = fill; ctx.fill(); ctx.strokeStyle = stroke; ctx.lineWidth = 2; ctx.stroke(); }
    }
    if (state.current.length) {
      path(state.current, false); ctx.strokeStyle = "#f5b942"; ctx.lineWidth = 2; ctx.stroke();
      for (const [px, py] of state.current) { ctx.fillStyle = "#f5b942"; ctx.fillRect(px * w - 3, py * h - 3, 6, 6); }
    }
  };
  const check = async () => {
    const error = document.getElementById("z-error");
    try {
      const out = await api("POST", `/v1/cameras/${encodeURIComponent(root.dataset.camera)}/zones/check`,
                            { include: state.include, exclude: state.exclude });
      document.getElementById("z-yaml").textContent = out.yaml; error.textContent = "";
    } catch (e) { error.textContent = e.message; }
  };
  const close = () => {
    if (state.current.length >= 3) { state[kind()].push(state.current); }
    state.current = []; draw(); check();
  };
  canvas.addEventListener("click", e => {
    const r = canvas.getBoundingClientRect();
    const px = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)), py = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
    state.current.push([Math.round(px * 1e4) / 1e4, Math.round(py * 1e4) / 1e4]); draw();
  });
  canvas.addEventListener("dblclick", e => { e.preventDefault(); state.current.pop(); close(); });  // the 2nd click added a point
  document.getElementById("z-close").onclick = close;
  document.getElementById("z-undo").onclick = () => { state.current.pop(); draw(); };
  document.getElementById("z-drop").onclick = () => { state[kind()].pop(); draw(); check(); };
  document.getElementById("z-clear").onclick = () => { state.include = []; state.exclude = []; state.current = []; draw(); check(); };
  document.getElementById("z-copy").onclick = () => navigator.clipboard && navigator.clipboard.writeText(document.getElementById("z-yaml").textContent);
  img.onload = draw; img.onerror = () => { img.alt = "no recent frame: the evidence service writes one every few seconds"; draw(); };
  window.addEventListener("resize", draw);
  draw(); check();
}

// ---- pages -----------------------------------------------------------------------------------------------------
function start() {
  const page = document.body.dataset.page;
  document.addEventListener("click", onLabelClick);
  if (page === "wall") {
    refreshFrames(); refreshSparks();
    setInterval(refreshFrames, 3000); setInterval(() => { refreshWall(); refreshSparks(); }, 5000);
    followEvents(() => refreshWall(), () => {});
  }
  if (page === "review" || page === "camera") {
    placeBoxes(document); document.querySelectorAll(".card").forEach(markLabel);
    followEvents(a => upsertCard(a.alert_id, a.camera_id), id => upsertCard(id, id.split(":")[0]));
  }
  if (page === "camera") {
    refreshFrames(); refreshTimeline();
    setInterval(refreshFrames, 3000); setInterval(refreshTimeline, 5000);
    document.getElementById("span").addEventListener("change", refreshTimeline);
  }
  if (page === "zones") { zoneEditor(document.getElementById("zones")); }
}

document.addEventListener("DOMContentLoaded", start);
