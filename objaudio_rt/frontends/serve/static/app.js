// objaudio click-to-hear page: plain JS, no build step. Talks to the same server's /v1 API.
"use strict";
const $ = (id) => document.getElementById(id);
const COLORS = [[255, 99, 71], [90, 200, 250], [255, 214, 10], [48, 209, 88], [191, 90, 242], [255, 159, 10],
                [100, 210, 255], [255, 55, 95]];
const MAX_SEED = 18446744073709551615n;  // 2**64 - 1, the runtime's seed range (options.MAX_SEED)
const DRAG_PX = 6;                     // a press that moves further than this is a box, not a click
const state = { health: null, scene: null, image: null, masks: [], selections: [], inflight: null, objectUrls: [] };

function message(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let text = `${response.status} ${response.statusText}`;
    try { text = (await response.json()).error || text; } catch (_) { /* not JSON */ }
    throw new Error(text);
  }
  return response;
}

function b64ToBytes(b64) { return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)); }
function blobUrl(bytes, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  state.objectUrls.push(url);
  return url;
}

async function loadImage(src) {
  const img = new Image();
  img.src = src;
  await img.decode();
  return img;
}

// A mask PNG (base64 or blob) -> {data: Uint8ClampedArray RGBA, width, height, canvas}.
async function maskFrom(src) {
  const img = await loadImage(src);
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  return { data: ctx.getImageData(0, 0, c.width, c.height).data, width: c.width, height: c.height };
}

function tinted(mask, color) {
  const c = document.createElement("canvas");
  c.width = mask.width; c.height = mask.height;
  const ctx = c.getContext("2d");
  const out = ctx.createImageData(mask.width, mask.height);
  for (let i = 0; i < mask.data.length; i += 4) {
    out.data[i] = color[0]; out.data[i + 1] = color[1]; out.data[i + 2] = color[2];
    out.data[i + 3] = Math.round(mask.data[i] * 0.55);
  }
  ctx.putImageData(out, 0, 0);
  return c;
}

function draw(box = null) {
  const canvas = $("canvas"), ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.image) return;
  ctx.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  state.selections.forEach((sel, i) => {
    if (sel.overlay) ctx.drawImage(sel.overlay, 0, 0, canvas.width, canvas.height);
    else if (sel.box) { ctx.strokeStyle = `rgb(${COLORS[i % COLORS.length]})`; ctx.lineWidth = 2;
      const [x0, y0, x1, y1] = sel.box.map((v, k) => v * (k % 2 ? scaleY() : scaleX()));
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0); }
  });
  if (box) { ctx.strokeStyle = "#fff"; ctx.setLineDash([4, 3]); ctx.strokeRect(box.x, box.y, box.w, box.h);
             ctx.setLineDash([]); }
}
const scaleX = () => $("canvas").width / state.scene.width;
const scaleY = () => $("canvas").height / state.scene.height;

function renderChips() {
  $("selections").replaceChildren(...state.selections.map((sel, i) => {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.style.background = `rgb(${COLORS[i % COLORS.length]})`;
    chip.textContent = sel.label;
    return chip;
  }));
}

async function openScene(info) {
  state.scene = info;
  state.selections = [];
  state.image = await loadImage(`/v1/scenes/${info.scene_id}/image`);
  const canvas = $("canvas"), side = 448, aspect = info.width / info.height;
  canvas.width = aspect >= 1 ? side : Math.round(side * aspect);
  canvas.height = aspect >= 1 ? Math.round(side / aspect) : side;
  state.masks = await Promise.all(info.masks.map(
    async (m) => ({ ...m, pixels: await maskFrom(`data:image/png;base64,${m.png}`) })));
  $("drop-hint").hidden = true;
  $("canvas").dataset.sceneId = info.scene_id;
  renderChips(); draw();
  const how = state.masks.length ? `${state.masks.length} object masks: click an object`
    : state.health && state.health.sam ? "click an object (Segment Anything)"
    : "no object masks and no SAM on the server: type a phrase or hear the whole scene";
  message(`scene ${info.width}×${info.height} — ${how}`);
}

async function upload(file) {
  const form = new FormData();
  form.append("image", file);
  message("uploading…");
  try { await openScene(await (await api("/v1/scenes", { method: "POST", body: form })).json()); }
  catch (e) { message(e.message, true); }
}

// What is under a click: the smallest scene mask covering it, else SAM on the server.
async function selectionAt(x, y) {
  const hits = state.masks.filter((m) => m.pixels.data[(y * m.pixels.width + x) * 4] > 127);
  if (hits.length) {
    const area = (m) => m.pixels.data.reduce((s, v, i) => s + (i % 4 === 0 && v > 127 ? 1 : 0), 0);
    const m = hits.sort((a, b) => area(a) - area(b))[0];
    return { request: { mask_index: m.index }, label: m.name, pixels: m.pixels };
  }
  if (state.masks.length && !(state.health && state.health.sam)) return null;
  return segmented({ points: [[x, y, 1]] }, `click ${x},${y}`);
}

async function segmented(prompt, label) {
  const response = await api("/v1/segment", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ scene_id: state.scene.scene_id, ...prompt }) });
  const bytes = new Uint8Array(await response.arrayBuffer());
  let b64 = ""; bytes.forEach((b) => { b64 += String.fromCharCode(b); });
  const pixels = await maskFrom(blobUrl(bytes, "image/png"));
  return { request: { mask_png: btoa(b64) }, label, pixels };
}

async function choose(sel, add) {
  if (!sel) { message("no object there: click inside one of the scene's objects", true); return; }
  if (!add) state.selections = [];
  if (sel.pixels) sel.overlay = tinted(sel.pixels, COLORS[state.selections.length % COLORS.length]);
  state.selections.push(sel);
  renderChips(); draw();
  await generate();
}

// The seed as its exact decimal digits (a JS Number holds integers exactly only up to 2**53), or null.
function seedDigits() {
  const text = $("seed").value.trim() || "0";
  return /^[0-9]+$/.test(text) && BigInt(text) <= MAX_SEED ? text.replace(/^0+(?=.)/, "") : null;
}

function settings() {
  const out = { union: $("union").value };
  for (const key of ["steps", "cfg", "duration"]) if ($(key).value !== "") out[key] = Number($(key).value);
  if ($("rate").value !== "") out.sample_rate = Number($("rate").value);
  if ($("loop").checked) out.loop = true;
  return out;
}

// The request body as JSON, the seed written as its digits (first key: the one top-level "seed").
function requestJson(body, seed) {
  return JSON.stringify({ seed, ...body }).replace(/^\{"seed":"([0-9]+)"/, '{"seed":$1');
}

async function generate() {
  if (!state.scene || !state.selections.length) return;
  const seed = seedDigits();
  if (seed === null) {
    message(`seed must be an integer in [0, 2**64 - 1] (what torch.Generator takes), got ${$("seed").value}`, true);
    return;
  }
  if (state.inflight) state.inflight.abort();       // a newer selection replaces the one in flight
  const controller = new AbortController();
  state.inflight = controller;
  const body = { scene_id: state.scene.scene_id, selections: state.selections.map((s) => s.request),
                 stems: $("stems").checked, format: "json", ...settings() };
  const start = performance.now();
  $("progress").hidden = false;
  const tick = () => {
    $("elapsed").textContent = `generating… ${((performance.now() - start) / 1000).toFixed(1)} s`;
  };
  const timer = setInterval(tick, 100);
  message("");
  try {
    const response = await api("/v1/generate", { method: "POST", signal: controller.signal,
      headers: { "Content-Type": "application/json" }, body: requestJson(body, seed) });
    showResult(await response.json(), (performance.now() - start) / 1000);
  } catch (e) {
    if (e.name !== "AbortError") message(e.message, true);
  } finally {
    clearInterval(timer);
    if (state.inflight === controller) { state.inflight = null; $("progress").hidden = true; }
  }
}

function clip(title, item, id, color) {
  const div = document.createElement("div");
  div.className = "clip"; div.id = id;
  const wav = blobUrl(b64ToBytes(item.wav), "audio/wav");
  div.innerHTML = `<h3>${color ? `<span class="chip" style="background:rgb(${color})">&nbsp;</span>` : ""}${title}
    <small>${item.seconds.toFixed(2)} s${item.silent ? " · silent (the model's silence gate)" : ""}</small></h3><audio controls preload="auto"></audio>
    <img class="spec" alt="log-mel spectrogram"><a download="${id}.wav">download WAV</a>`;
  div.querySelector("audio").src = wav;
  div.querySelector("audio").dataset.seconds = item.seconds;
  div.querySelector("img").src = `data:image/png;base64,${item.spectrogram_png}`;
  div.querySelector("a").href = wav;
  return div;
}

function showResult(result, seconds) {
  state.objectUrls.splice(0, state.objectUrls.length - 64).forEach((u) => URL.revokeObjectURL(u));
  const names = state.selections.map((s) => s.label);
  const nodes = [clip(names.length > 1 ? `mix: ${names.join(" + ")}` : names[0], result.mix, "mix")];
  result.stems.forEach((stem, i) => {
    if (result.stems.length > 1) nodes.push(clip(`stem: ${names[i]}`, stem, `stem-${i}`, COLORS[i % COLORS.length]));
  });
  $("result").replaceChildren(...nodes);
  $("result").dataset.stems = result.stems.length;
  $("result").dataset.loop = result.loop;
  document.querySelectorAll("#result audio").forEach((a) => { a.loop = result.loop; });   // a loop plays on repeat
  const mixAudio = document.querySelector("#mix audio");
  mixAudio.play().catch(() => { /* autoplay may be blocked until the user interacts */ });
  message(`${result.sampler} ${result.steps} steps, cfg ${result.cfg}, seed ${result.seed}` +
          `${result.loop ? ", a seamless loop" : ""} — ${seconds.toFixed(1)} s`);
}

function pixelAt(event) {
  const r = $("canvas").getBoundingClientRect();
  const cx = event.clientX - r.left, cy = event.clientY - r.top;
  const clamp = (v, n) => Math.min(n - 1, Math.max(0, Math.floor(v)));
  return { cx, cy, x: clamp(cx / r.width * state.scene.width, state.scene.width),
           y: clamp(cy / r.height * state.scene.height, state.scene.height) };
}

function wireCanvas() {
  const canvas = $("canvas");
  let press = null;
  canvas.addEventListener("mousedown", (e) => { if (state.scene) press = pixelAt(e); });
  canvas.addEventListener("mousemove", (e) => {
    if (!press) return;
    const p = pixelAt(e);
    if (Math.hypot(p.cx - press.cx, p.cy - press.cy) > DRAG_PX)
      draw({ x: Math.min(p.cx, press.cx), y: Math.min(p.cy, press.cy),
             w: Math.abs(p.cx - press.cx), h: Math.abs(p.cy - press.cy) });
  });
  canvas.addEventListener("mouseup", async (e) => {
    if (!press) return;
    const start = press, end = pixelAt(e), add = e.shiftKey;
    press = null;
    try {
      if (Math.hypot(end.cx - start.cx, end.cy - start.cy) > DRAG_PX) {
        const box = [Math.min(start.x, end.x), Math.min(start.y, end.y),
                     Math.max(start.x, end.x) + 1, Math.max(start.y, end.y) + 1];
        await choose(await segmented({ box }, `box ${box.join(",")}`), add);
      } else {
        await choose(await selectionAt(end.x, end.y), add);
      }
    } catch (err) { draw(); message(err.message, true); }
  });
}

function wireDrop() {
  const stage = $("stage");
  stage.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("drag"); });
  stage.addEventListener("dragleave", () => stage.classList.remove("drag"));
  stage.addEventListener("drop", (e) => {
    e.preventDefault(); stage.classList.remove("drag");
    if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
  });
}

async function init() {
  wireCanvas(); wireDrop();
  $("file").addEventListener("change", (e) => { if (e.target.files.length) upload(e.target.files[0]); });
  $("demo").addEventListener("click", async () => {
    try { await openScene(await (await api("/v1/demo")).json()); } catch (e) { message(e.message, true); }
  });
  $("whole").addEventListener("click",
    () => state.scene && choose({ request: { whole: true }, label: "whole scene" }, false));
  $("clear").addEventListener("click", () => {
    state.selections = []; renderChips(); draw(); $("result").replaceChildren();
  });
  $("phrase-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("phrase").value.trim();
    if (state.scene && text) choose({ request: { text }, label: `“${text}”` }, false);
  });
  try {
    state.health = await (await api("/health")).json();
    const d = state.health.defaults;
    $("steps").value = d.steps; $("cfg").value = d.cfg; $("duration").value = d.duration;
    $("duration").max = d.max_duration;
    $("health").textContent = `${state.health.model} · ${state.health.device} · ${state.health.backend}` +
      (state.health.sam ? " · SAM" : " · no SAM (scene masks and text only)");
  } catch (e) { $("health").textContent = `server unreachable: ${e.message}`; }
}
init();
