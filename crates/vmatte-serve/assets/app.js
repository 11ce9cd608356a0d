// vmatte's page: uploads, the live job table, a job's players and
// downloads, and the GPU charts. Plain DOM, no libraries; everything it
// loads comes from the server that served it.
//
// Data flow: /api/events (hello, job, progress, deleted, gpu) -> jobs map
// and gpu series -> render. Actions are fetches to /api/jobs.

const $ = (sel) => document.querySelector(sel);
const jobs = new Map(); // id -> job (as the API shows it)
const gpu = new Map(); // gpu index -> [samples]
let selected = null;
let token = localStorage.getItem("vmatte-token") || "";

function withToken(url) {
  if (!token) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

async function api(method, url, body) {
  const headers = {};
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) askToken();
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

function askToken() {
  $("#token-panel").hidden = false;
  $("#token").focus();
}

$("#token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("#token").value.trim();
  localStorage.setItem("vmatte-token", token);
  $("#token-panel").hidden = true;
  connect();
});

// ---- time and number words ----
function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
function size(n) {
  if (n === null || n === undefined) return "";
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  return (n / 1024).toFixed(0) + " KiB";
}
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// ---- the job table ----
function stateWords(j) {
  if (j.state === "failed" && j.error) return j.error;
  return "";
}

function renderJobs() {
  const tbody = $("#jobs tbody");
  tbody.replaceChildren();
  const list = [...jobs.values()].sort((a, b) => b.id - a.id);
  $("#no-jobs").hidden = list.length > 0;
  for (const j of list) {
    const done = j.frames_done ?? 0;
    const total = j.frames_total;
    const bar = el("progress", { max: total || 1, value: j.state === "done" ? total || 1 : total ? done : 0,
      "aria-label": `${j.name} progress` });
    const frames = total ? `${done} / ${total} frames` : j.state === "running" ? `${done} frames` : "";
    const actions = el("td", { class: "actions" });
    if (j.state === "failed") actions.append(el("button", { type: "button", class: "quiet", onclick: (e) => { e.stopPropagation(); act(j, "retry"); } }, "Retry"));
    if (j.state === "queued" || j.state === "running") actions.append(el("button", { type: "button", class: "danger", onclick: (e) => { e.stopPropagation(); act(j, "cancel"); } }, "Cancel"));
    actions.append(el("button", { type: "button", class: "quiet", "aria-label": `Delete ${j.name}`, onclick: (e) => { e.stopPropagation(); remove(j); } }, "Delete"));
    const row = el("tr", { tabindex: "0", "data-id": j.id, class: selected === j.id ? "selected" : "",
      onclick: () => select(j.id), onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(j.id); } } },
      el("td", {}, String(j.id)),
      el("td", { class: "name" }, j.name),
      el("td", {}, el("span", { class: `badge ${j.state}` }, j.state)),
      el("td", {}, el("div", { class: "bar" }, bar, el("span", {}, frames))),
      el("td", {}, j.fps ? `${j.fps.toFixed(1)} fps` : ""),
      el("td", {}, j.state === "running" ? duration(j.eta_s) : j.state === "done" ? `took ${duration(j.seconds)}` : ""),
      actions);
    tbody.append(row);
    const why = stateWords(j);
    if (why) tbody.append(el("tr", { class: "err" }, el("td", {}), el("td", { colspan: "6" }, "Why: " + why)));
  }
}

async function act(j, what) {
  try { merge(await api("POST", `/api/jobs/${j.id}/${what}`)); }
  catch (e) { $("#form-error").textContent = `${j.name}: ${e.message}`; }
}

async function remove(j) {
  if (!confirm(`Delete ${j.name} and its outputs?`)) return;
  try {
    await api("DELETE", `/api/jobs/${j.id}`);
    jobs.delete(j.id);
    if (selected === j.id) { selected = null; $("#detail").hidden = true; }
    renderJobs();
  } catch (e) { $("#form-error").textContent = `${j.name}: ${e.message}`; }
}

function merge(j) {
  const old = jobs.get(j.id);
  jobs.set(j.id, old ? { ...old, ...j } : j);
  renderJobs();
  if (selected === j.id && (!old || old.state !== j.state)) showDetail(jobs.get(j.id));
}

// ---- one job: players, downloads, log ----
const players = () => [$("#v-input"), $("#v-alpha"), $("#v-composite")];

function select(id) {
  selected = id;
  renderJobs();
  showDetail(jobs.get(id));
}

function showDetail(j) {
  if (!j) return;
  const d = $("#detail");
  d.hidden = false;
  $("#detail-title").textContent = `Job ${j.id}: ${j.name} (${j.state})`;
  const [vi, va, vc] = players();
  const set = (v, url) => { const src = url ? withToken(url) : ""; if (v.dataset.src !== src) { v.dataset.src = src; if (src) v.src = src; else v.removeAttribute("src"); } };
  set(vi, j.links.input);
  set(va, j.links.preview_alpha);
  set(vc, j.links.preview_composite);
  const missing = j.state === "done" && !(j.links.preview_alpha || j.links.preview_composite);
  $("#no-preview").hidden = !missing;
  $("#no-preview").textContent = missing ? "This job made neither a matte nor a composite to preview; download its outputs below." : "";
  const ul = $("#downloads");
  ul.replaceChildren();
  for (const o of j.outputs) {
    ul.append(el("li", {}, el("a", { href: withToken(o.url), download: o.download }, `${o.kind}: ${o.download}`), " ", el("span", { class: "muted" }, size(o.bytes))));
  }
  if (!j.outputs.length) ul.append(el("li", { class: "muted" }, j.state === "done" ? "no outputs" : "outputs appear when the job is done"));
  loadLog(j);
}

async function loadLog(j) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(j.links.log, { headers }).catch(() => null);
  $("#log").textContent = r && r.ok ? await r.text() : "(no log yet)";
}

// One transport for the three players: play/pause together, one scrubber,
// the matte and composite follow the original's clock.
function leader() { return players().find((v) => v.src && v.readyState > 0) || players()[0]; }
$("#play").addEventListener("click", () => {
  const lead = leader();
  const playing = !lead.paused;
  for (const v of players()) if (v.src) (playing ? v.pause() : v.play().catch(() => {}));
  $("#play").textContent = playing ? "▶ Play" : "❚❚ Pause";
  $("#play").setAttribute("aria-label", playing ? "Play" : "Pause");
});
$("#scrub").addEventListener("input", () => {
  const lead = leader();
  if (!lead.duration) return;
  const t = ($("#scrub").value / 1000) * lead.duration;
  for (const v of players()) if (v.src) v.currentTime = Math.min(t, v.duration || t);
});
for (const v of players()) {
  v.addEventListener("timeupdate", () => {
    if (v !== leader()) return;
    if (v.duration) $("#scrub").value = Math.round((v.currentTime / v.duration) * 1000);
    $("#clock").textContent = `${v.currentTime.toFixed(1)} s`;
    for (const o of players()) if (o !== v && o.src && Math.abs(o.currentTime - v.currentTime) > 0.15) o.currentTime = v.currentTime;
  });
  v.addEventListener("ended", () => { $("#play").textContent = "▶ Play"; });
}

// ---- uploads ----
const drop = $("#drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => { uploadAll([...e.dataTransfer.files]); });
$("#files").addEventListener("change", () => { /* sent with the form, or at once when dropped */ });
$("#upload-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const files = [...$("#files").files];
  if (!files.length) { $("#form-error").textContent = "Choose or drop at least one video first."; return; }
  uploadAll(files);
  $("#files").value = "";
});

function options() {
  const o = {};
  const preset = $("#preset").value; if (preset) o.preset = preset;
  const format = $("#format").value; if (format) o.format = format;
  const foreground = $("#foreground").value; if (foreground) o.foreground = foreground;
  const bg = $("#background").value.trim(); if (bg) o.background = bg;
  const outs = [...document.querySelectorAll("input[name=outputs]:checked")].map((i) => i.value);
  if (outs.length) o.outputs = outs.join(",");
  return o;
}

function uploadAll(files) {
  $("#form-error").textContent = "";
  for (const f of files) upload(f, options());
}

function upload(file, opts) {
  const bar = el("progress", { max: 100, value: 0, "aria-label": `Uploading ${file.name}` });
  const pct = el("span", {}, "0%");
  const li = el("li", {}, el("span", { class: "name" }, file.name), bar, pct);
  $("#uploads").append(li);
  const form = new FormData();
  form.append("options", JSON.stringify(opts));
  form.append("file", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/jobs");
  if (token) xhr.setRequestHeader("Authorization", "Bearer " + token);
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) { bar.value = (e.loaded / e.total) * 100; pct.textContent = `${Math.round(bar.value)}%`; }
  });
  xhr.addEventListener("load", () => {
    let data = {};
    try { data = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 401) askToken();
    if (xhr.status >= 200 && xhr.status < 300) {
      bar.value = 100; pct.textContent = data.submitted === "known" ? "known" : "queued";
      merge(data.job);
      setTimeout(() => li.remove(), 4000);
    } else {
      pct.textContent = "refused";
      $("#form-error").textContent = `${file.name}: ${data.error || xhr.statusText}`;
    }
  });
  xhr.addEventListener("error", () => { pct.textContent = "failed"; $("#form-error").textContent = `${file.name}: the upload broke off; try again`; });
  xhr.send(form);
}

// ---- GPU charts ----
const SERIES = [
  ["util_pct", "utilisation %", "#0b6bcb", () => 100],
  ["mem_pct", "memory %", "#8250df", () => 100],
  ["temp_c", "temperature °C", "#cf222e", () => 100],
  ["power_w", "power W", "#1a7f37", (s) => Math.max(100, ...s.map((x) => x.power_w || 0))],
];

function addSamples(samples) {
  for (const s of samples) {
    s.mem_pct = s.mem_total_mib ? (100 * s.mem_used_mib) / s.mem_total_mib : null;
    const list = gpu.get(s.gpu) || [];
    list.push(s);
    while (list.length > 900) list.shift();
    gpu.set(s.gpu, list);
  }
  drawGpus();
}

function drawGpus() {
  $("#no-gpu").hidden = gpu.size > 0;
  const box = $("#gpus");
  for (const [index, samples] of gpu) {
    let card = box.querySelector(`[data-gpu="${index}"]`);
    if (!card) {
      const legend = el("div", { class: "legend" });
      for (const [, label, colour] of SERIES) { const i = el("i"); i.style.background = colour; legend.append(el("span", {}, i, label)); }
      card = el("div", { class: "gpu", "data-gpu": index }, el("h3", {}), el("canvas", { role: "img", width: 1100, height: 160 }), legend);
      box.append(card);
    }
    const last = samples[samples.length - 1];
    card.querySelector("h3").textContent = `GPU ${index}: ${last.util_pct ?? "?"}% busy, ${((last.mem_used_mib || 0) / 1024).toFixed(1)} / ${((last.mem_total_mib || 0) / 1024).toFixed(1)} GiB, ${last.temp_c ?? "?"} °C, ${last.power_w ? last.power_w.toFixed(0) : "?"} W`;
    const canvas = card.querySelector("canvas");
    canvas.setAttribute("aria-label", card.querySelector("h3").textContent + " over the last minutes");
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = "#e5e9ee";
    for (let y = 0; y <= 4; y++) { ctx.beginPath(); ctx.moveTo(0, (h * y) / 4); ctx.lineTo(w, (h * y) / 4); ctx.stroke(); }
    const t0 = samples[0].t_ms, t1 = Math.max(last.t_ms, t0 + 1);
    for (const [key, , colour, top] of SERIES) {
      const max = top(samples);
      ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.beginPath();
      let started = false;
      for (const s of samples) {
        if (s[key] === null || s[key] === undefined) continue;
        const x = ((s.t_ms - t0) / (t1 - t0)) * (w - 4) + 2;
        const y = h - 2 - (Math.min(s[key], max) / max) * (h - 4);
        if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
      }
      ctx.stroke();
    }
  }
}

// ---- live events ----
let source = null;
function connect() {
  if (source) source.close();
  source = new EventSource(withToken("/api/events"));
  source.addEventListener("open", () => { $("#connection").textContent = "live"; });
  source.addEventListener("error", () => {
    $("#connection").textContent = "reconnecting…";
    fetch(withToken("/api/jobs?limit=1")).then((r) => { if (r.status === 401) { source.close(); askToken(); } }).catch(() => {});
  });
  source.addEventListener("hello", (e) => {
    const d = JSON.parse(e.data);
    jobs.clear();
    for (const j of d.jobs) jobs.set(j.id, j);
    gpu.clear();
    addSamples(d.gpu);
    $("#connection").textContent = d.workers ? "live · this server runs jobs" : "live · jobs run on remote workers";
    renderJobs();
    if (selected !== null) showDetail(jobs.get(selected));
  });
  source.addEventListener("job", (e) => merge(JSON.parse(e.data)));
  source.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    const j = jobs.get(p.id);
    if (j && j.state !== "done" && j.state !== "failed") { Object.assign(j, p); j.state = "running"; renderJobs(); }
  });
  source.addEventListener("deleted", (e) => { jobs.delete(JSON.parse(e.data).id); renderJobs(); });
  source.addEventListener("gpu", (e) => addSamples(JSON.parse(e.data)));
  source.addEventListener("lagged", () => connect());
}

connect();
