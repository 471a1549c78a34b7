"use strict";
// The tfic console: plain JavaScript over the gateway's own HTTP API (docs/console.md). No framework, no build.

const TOKEN_KEY = "tfic-token";
const $ = (id) => document.getElementById(id);
const state = { config: null, models: [], jobTimer: null, watch: null, job: null };

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: "Bearer " + token } : extra;
}

async function failure(response) {
  let message = response.status + " " + response.statusText;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (e) { /* not JSON */ }
  if (response.status === 401) askToken();
  return new ApiError(response.status, message);
}

// Every call the pages make goes through here: the token, the gateway's JSON errors.
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  if (!response.ok) throw await failure(response);
  return response;
}

async function getJson(path) { return (await api(path)).json(); }

function askToken() {
  const dialog = $("token-dialog");
  if (!dialog.open) dialog.showModal();
}

function setupToken() {
  $("token-button").hidden = !state.config.auth;
  $("token-button").addEventListener("click", askToken);
  $("token-form").addEventListener("submit", () => {
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    showError("");
    route();
  });
  if (state.config.auth && !sessionStorage.getItem(TOKEN_KEY)) askToken();
}

// --- pages ---------------------------------------------------------------------------------------------

async function route() {
  const page = (location.hash || "#try").slice(1);
  const known = ["try", "models", "api"].concat(state.config.jobs ? ["jobs"] : []);
  const current = known.includes(page) ? page : "try";
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== "page-" + current;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === current);
  stopJobs();
  showError("");
  try {
    if (current === "try") await loadTry();
    else if (current === "models") { await loadModels(); every(loadModels); }
    else if (current === "jobs") await loadJobs();
    else if (current === "api") { const frame = $("api-frame"); if (!frame.src) frame.src = frame.dataset.src; }
  } catch (e) {
    showError(e.message);
  }
}

async function fetchModels() {
  state.models = (await getJson("/models")).models;
  return state.models;
}

// Try a model: the same request a client sends, POST …/invocations with Content-Type application/x-image.
async function loadTry() {
  const models = await fetchModels();
  const select = $("try-model");
  const previous = select.value;
  select.replaceChildren(...models.map((m) => el("option", { value: m.name, text: m.name })));
  if (models.some((m) => m.name === previous)) select.value = previous;
  else if (models.some((m) => m.name === state.config.default_model)) select.value = state.config.default_model;
  fillVersions();
}

function fillVersions() {
  const model = state.models.find((m) => m.name === $("try-model").value);
  const options = [el("option", { value: "", text: "latest available" })];
  for (const v of (model ? model.versions : [])) {
    options.push(el("option", { value: String(v.version), text: v.version + " (" + v.state + ")" }));
  }
  $("try-version").replaceChildren(...options);
}

async function classify(file) {
  const name = $("try-model").value;
  if (!name) { showError("no model is served"); return; }
  showError("");
  const version = $("try-version").value;
  const k = Math.max(1, parseInt($("try-k").value, 10) || 5);
  const path = "/models/" + encodeURIComponent(name) + (version ? "/versions/" + version : "") + "/invocations?top_k=" + k;
  $("try-preview").src = URL.createObjectURL(file);
  $("try-preview").hidden = false;
  const started = performance.now();
  try {
    const response = await api(path, {
      method: "POST",
      headers: { "Content-Type": "application/x-image", Accept: "application/json;verbose" },
      body: file,
    });
    const body = await response.json();
    const latency = performance.now() - started;
    showPrediction(body, latency, path);
  } catch (e) {
    $("try-result").hidden = true;
    showError(e.message);
  }
}

function showPrediction(body, latency, path) {
  $("try-label").textContent = body.predicted_label;
  $("try-latency").textContent = latency.toFixed(1) + " ms";
  $("try-route").textContent = "(POST " + path + ")";
  const rows = body.labels.map((label, i) => ({ label, p: body.probabilities[i] }));
  rows.sort((a, b) => b.p - a.p);
  $("try-bars").replaceChildren(...rows.map((r) => el("li", {},
    el("span", { class: "bar-label", text: r.label }),
    el("span", { class: "bar" }, el("span", { class: "fill", style: "width:" + (100 * r.p).toFixed(1) + "%" })),
    el("span", { class: "bar-value", text: (100 * r.p).toFixed(2) + " %" }))));
  $("try-result").hidden = false;
}

function setupTry() {
  $("try-model").addEventListener("change", fillVersions);
  $("try-file").addEventListener("change", (e) => { if (e.target.files[0]) classify(e.target.files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) classify(e.dataTransfer.files[0]);
  });
}

// Models: /models as the API returns it, one table per model.
async function loadModels() {
  const models = await fetchModels();
  const cards = models.map((m) => {
    const rows = m.versions.map((v) => el("tr", { "data-version": String(v.version) },
      el("td", { text: String(v.version) }),
      el("td", {}, el("span", { class: "state state-" + v.state.toLowerCase(), text: v.state })),
      el("td", { class: "reason", text: v.error || "" }),
      el("td", { text: v.input_shape ? v.input_shape.height + "×" + v.input_shape.width + "×" + v.input_shape.channels : "" }),
      el("td", { class: "labels", text: v.labels.join(", ") }),
      el("td", { text: v.version_labels.join(", ") })));
    const head = el("tr", {}, ...["Version", "State", "Reason", "Input", "Labels", "Version labels"].map((h) => el("th", { text: h })));
    return el("article", { class: "card", "data-model": m.name }, el("h2", { text: m.name }),
      el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  });
  $("models-list").replaceChildren(...(cards.length ? cards : [el("p", { text: "No model is served." })]));
}

// Jobs: the Trainer's jobs through the gateway (/console/api/), a job's events streamed as JSON lines.
const STATE_NAMES = {
  JOB_STATE_PENDING: "Pending", JOB_STATE_IN_PROGRESS: "InProgress", JOB_STATE_COMPLETED: "Completed",
  JOB_STATE_FAILED: "Failed", JOB_STATE_STOPPING: "Stopping", JOB_STATE_STOPPED: "Stopped",
};
const TERMINAL = ["Completed", "Failed", "Stopped"];

function stopJobs() {
  if (state.jobTimer) clearInterval(state.jobTimer);
  state.jobTimer = null;
  if (state.watch) state.watch.abort();
  state.watch = null;
}

async function loadJobs() {
  await refreshJobs();
  every(refreshJobs);
}

// The Models and Jobs pages follow changes (a version loading, a job's state) by reloading every 2 s.
function every(load) {
  if (state.jobTimer) clearInterval(state.jobTimer);
  state.jobTimer = setInterval(() => load().catch((e) => showError(e.message)), 2000);
}

async function refreshJobs() {
  const body = await getJson("/console/api/jobs");
  const rows = (body.jobs || []).map((job) => {
    const m = job.last_metrics;
    const row = el("tr", { class: "clickable", "data-job": job.name },
      el("td", { text: job.name }),
      el("td", {}, el("span", { class: "state state-" + stateName(job).toLowerCase(), text: stateName(job) })),
      el("td", { text: m ? m.epoch + "/" + m.epochs : "" }),
      el("td", { text: job.spec ? job.spec.model_name : "" }),
      el("td", { text: job.create_time ? new Date(job.create_time).toLocaleString() : "" }));
    row.addEventListener("click", () => openJob(job.name));
    return row;
  });
  $("jobs-table").tBodies[0].replaceChildren(...rows);
}

function stateName(job) { return STATE_NAMES[job.state] || job.state || "?"; }

async function openJob(name) {
  if (state.watch) state.watch.abort();
  const job = await getJson("/console/api/jobs/" + encodeURIComponent(name));
  state.job = { name, series: { loss: [], val_loss: [], accuracy: [], val_accuracy: [] } };
  $("job-detail").hidden = false;
  $("job-title").textContent = job.name;
  $("job-events").replaceChildren();
  $("job-report").hidden = true;
  $("job-tensorboard").textContent = job.tensorboard_dir ? "TensorBoard: tensorboard --logdir " + job.tensorboard_dir : "";
  showJob(job);
  drawCharts();
  watchJob(name);
}

function showJob(job) {
  const name = stateName(job);
  $("job-state").textContent = name;
  $("job-state").className = "state state-" + name.toLowerCase();
  const m = job.last_metrics;
  $("job-progress").textContent = m ? "epoch " + m.epoch + " of " + m.epochs : "";
  $("job-failure").textContent = job.failure_reason || "";
  $("job-failure").hidden = !job.failure_reason;
  const stop = $("job-stop");
  stop.hidden = TERMINAL.includes(name) || name === "Stopping";
  stop.onclick = async () => {
    try { showJob(await (await api("/console/api/jobs/" + encodeURIComponent(job.name) + "/stop", { method: "POST" })).json()); }
    catch (e) { showError(e.message); }
  };
  if (job.output) showReport(job.output);
}

async function watchJob(name) {
  const controller = new AbortController();
  state.watch = controller;
  try {
    const response = await api("/console/api/jobs/" + encodeURIComponent(name) + "/events", { signal: controller.signal });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.trim()) onEvent(JSON.parse(line));
      }
    }
    if (state.watch === controller) showJob(await getJson("/console/api/jobs/" + encodeURIComponent(name)));
  } catch (e) {
    if (e.name !== "AbortError") showError(e.message);
  }
}

function onEvent(event) {
  if (event.error) { showError(event.error.message); return; }
  let text = "";
  if (event.epoch) {
    const e = event.epoch;
    for (const key of Object.keys(state.job.series)) {
      if (e.values && key in e.values) state.job.series[key].push([e.epoch, e.values[key]]);
    }
    drawCharts();
    $("job-progress").textContent = "epoch " + e.epoch + " of " + e.epochs;
    text = "epoch " + e.epoch + "/" + e.epochs + (e.phase ? " [" + e.phase + "] " : " ") +
      Object.entries(e.values || {}).map(([k, v]) => k + "=" + v.toFixed(4)).join(" ");
  } else if (event.state) {
    const name = STATE_NAMES[event.state] || event.state;
    $("job-state").textContent = name;
    $("job-state").className = "state state-" + name.toLowerCase();
    text = "state " + name + (event.failure_reason ? ": " + event.failure_reason : "");
    if (TERMINAL.includes(name)) $("job-stop").hidden = true;
    refreshJobs().catch((e) => showError(e.message));
  } else if (event.model) {
    showReport(event.model);
    text = "published " + event.model.model_name + " version " + event.model.version;
  } else if (event.message) {
    text = event.message;
  }
  if (text) $("job-events").append(el("li", { text }));
}

function showReport(output) {
  const metrics = Object.entries(output.metrics || {}).sort();
  $("job-metrics").replaceChildren(...metrics.map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: v.toFixed(4) }))));
  const cm = output.confusion_matrix;
  const table = $("job-confusion");
  if (cm && cm.labels) {
    const n = cm.labels.length;
    const counts = (cm.counts || []).map(Number);
    const peak = Math.max(1, ...counts);
    const head = el("tr", {}, el("th"), ...cm.labels.map((l) => el("th", { text: l })));
    const rows = cm.labels.map((label, i) => el("tr", {}, el("th", { text: label }), ...cm.labels.map((_, j) => {
      const c = counts[i * n + j] || 0;
      return el("td", { text: String(c), style: "background: rgba(37, 99, 235, " + (c / peak).toFixed(3) + ")" + (c / peak > 0.5 ? "; color: white" : "") });
    })));
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  } else {
    table.replaceChildren();
  }
  $("job-report").hidden = false;
}

// A line chart on a canvas: training (solid) and validation (dashed) per epoch.
function drawCharts() {
  const s = state.job.series;
  drawChart($("chart-loss"), [["loss", s.loss, "#2563eb", []], ["validation", s.val_loss, "#dc2626", [6, 4]]]);
  drawChart($("chart-accuracy"), [["accuracy", s.accuracy, "#2563eb", []], ["validation", s.val_accuracy, "#dc2626", [6, 4]]]);
}

function drawChart(canvas, lines) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 48, R = 12, T = 12, B = 28;
  ctx.clearRect(0, 0, W, H);
  const points = lines.flatMap((l) => l[1]);
  canvas.dataset.points = String(lines[0][1].length);
  ctx.strokeStyle = "#9ca3af";
  ctx.strokeRect(L, T, W - L - R, H - T - B);
  if (!points.length) return;
  const maxX = Math.max(2, ...points.map((p) => p[0]));
  let minY = Math.min(...points.map((p) => p[1])), maxY = Math.max(...points.map((p) => p[1]));
  if (maxY - minY < 1e-9) { minY -= 0.5; maxY += 0.5; }
  const x = (v) => L + ((v - 1) / (maxX - 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - minY) / (maxY - minY)) * (H - T - B);
  ctx.fillStyle = "#374151";
  ctx.font = "11px sans-serif";
  ctx.fillText(maxY.toFixed(3), 2, T + 8);
  ctx.fillText(minY.toFixed(3), 2, H - B);
  ctx.fillText("epoch 1", L, H - 10);
  ctx.fillText(String(maxX), W - R - 14, H - 10);
  lines.forEach(([label, data, color, dash], i) => {
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.setLineDash(dash);
    ctx.beginPath();
    data.forEach((p, k) => (k ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
    ctx.stroke();
    ctx.setLineDash([]);
    data.forEach((p) => ctx.fillRect(x(p[0]) - 2, y(p[1]) - 2, 4, 4));
    // The legend sits under the plot, between the axis labels, where no line can cross it.
    const lx = L + 70 + 110 * i;
    ctx.setLineDash(dash);
    ctx.beginPath();
    ctx.moveTo(lx, H - 14);
    ctx.lineTo(lx + 22, H - 14);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillText(label, lx + 28, H - 10);
  });
}

async function main() {
  state.config = await (await fetch("/console/config.json")).json();
  $("nav-jobs").hidden = !state.config.jobs;
  setupToken();
  setupTry();
  window.addEventListener("hashchange", route);
  await route();
}

main();
