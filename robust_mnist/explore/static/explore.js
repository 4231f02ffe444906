// robust-mnist explore: the page's behaviour. Every number shown comes from the server's JSON
// endpoints (the library's preprocessing, perturbations, models and per-digit metrics); this
// script only draws, sends and displays. No external asset, no inline script (strict CSP).
"use strict";

const explorer = {
  config: null, digit: null, label: null, target: null, settings: {}, last: null, sweep: null,
  inFlight: false, dirty: false, requests: 0, answered: 0,
};
window.explorer = explorer;
const $ = (id) => document.getElementById(id);
const COLOURS = ["#1f6feb", "#e36209", "#2da44e", "#8250df"];
const SVG = "http://www.w3.org/2000/svg";

function say(text, isError) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("error", Boolean(isError));
}

async function call(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (error) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function postJson(url, value) {
  return call(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(value) });
}

// ------------------------------------------------------------------ drawing
const pad = $("canvas");
const pen = pad.getContext("2d");
let drawing = false;
let inked = false;

function clearPad() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, pad.width, pad.height);
  inked = false;
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  const [x, y] = point(event);
  pen.strokeStyle = "#000";
  pen.lineWidth = 20;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.beginPath();
  pen.moveTo(x, y);
  pen.lineTo(x + 0.1, y + 0.1);
  pen.stroke();
  inked = true;
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  pen.lineTo(x, y);
  pen.stroke();
});
function endStroke() {
  if (!drawing) return;
  drawing = false;
  sendCanvas();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function sendCanvas() {
  if (!inked) return;
  pad.toBlob((blob) => sendPicture(blob, "image/png", "your drawing"), "image/png");
}

async function sendPicture(blob, type, source) {
  try {
    const payload = await call("/api/digit/picture", {
      method: "POST", headers: { "Content-Type": type || "application/octet-stream" }, body: blob,
    });
    payload.source = source;
    setDigit(payload, false);
  } catch (error) {
    say(error.message, true);
  }
}

// ------------------------------------------------------------------ digits
function paint(canvas, pixels) {
  const context = canvas.getContext("2d");
  const image = context.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = Math.round(255 * pixels[i]);
    image.data[4 * i] = v; image.data[4 * i + 1] = v; image.data[4 * i + 2] = v; image.data[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

function setDigit(payload, keepLabel) {
  explorer.digit = payload.digit;
  if (!keepLabel) {
    explorer.label = payload.label === null || payload.label === undefined ? null : payload.label;
    $("label").value = explorer.label === null ? "" : String(explorer.label);
  }
  $("source").textContent = `Digit: ${payload.source}`;
  paint($("clean"), payload.digit);
  say("");
  requestPrediction();
  runSweep();
}

// ------------------------------------------------------------------ predictions
function requestPrediction() {
  if (!explorer.digit) return;
  if (explorer.inFlight) { explorer.dirty = true; return; }
  explorer.inFlight = true;
  explorer.dirty = false;
  explorer.requests += 1;
  const settings = {};
  for (const [name, value] of Object.entries(explorer.settings)) if (value !== 0) settings[name] = value;
  postJson("/api/predict", { digit: explorer.digit, settings, target: explorer.target, label: explorer.label })
    .then((result) => {
      explorer.last = result;
      explorer.answered += 1;
      paint($("perturbed"), result.image);
      showBars(result.models);
    })
    .catch((error) => say(error.message, true))
    .finally(() => {
      explorer.inFlight = false;
      if (explorer.dirty) requestPrediction();
    });
}

function showBars(models) {
  const holder = $("bars");
  holder.replaceChildren();
  models.forEach((model) => {
    const box = document.createElement("div");
    box.className = "model";
    box.dataset.model = model.name;
    const title = document.createElement("h3");
    const top = model.probabilities.indexOf(Math.max(...model.probabilities));
    title.textContent = `${model.name}: ${top}`;
    box.append(title);
    model.probabilities.forEach((p, digit) => {
      const row = document.createElement("div");
      row.className = digit === top ? "bar top" : "bar";
      row.dataset.p = String(p);
      const name = document.createElement("span");
      name.textContent = String(digit);
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = `${(100 * p).toFixed(2)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.textContent = p.toFixed(3);
      row.append(name, track, value);
      box.append(row);
    });
    holder.append(box);
  });
}

// ------------------------------------------------------------------ sliders
function format(value) {
  return Math.abs(value) >= 100 ? value.toFixed(0) : String(Number(value.toPrecision(3)));
}

function buildSliders(sliders) {
  const holder = $("sliders");
  sliders.forEach((slider) => {
    const box = document.createElement("div");
    box.className = "slider";
    const id = `slider-${slider.name}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.title = slider.description;
    label.append(document.createTextNode(`${slider.name} `));
    const unit = document.createElement("span");
    unit.className = "unit";
    unit.textContent = `(${slider.unit})`;
    label.append(unit);
    const output = document.createElement("output");
    output.htmlFor = id;
    output.textContent = "0";
    const input = document.createElement("input");
    Object.assign(input, { type: "range", id, min: slider.min, max: slider.max, step: slider.step, value: 0 });
    input.dataset.family = slider.name;
    input.setAttribute("aria-valuetext", `0 ${slider.unit}`);
    input.addEventListener("input", () => {
      const value = Number(input.value);
      explorer.settings[slider.name] = value;
      output.textContent = format(value);
      input.setAttribute("aria-valuetext", `${format(value)} ${slider.unit}`);
      box.classList.toggle("active", value !== 0);
      requestPrediction();
    });
    box.append(label, output, input);
    holder.append(box);
  });
}

function resetSliders() {
  explorer.settings = {};
  document.querySelectorAll("#sliders input").forEach((input) => {
    input.value = 0;
    input.dispatchEvent(new Event("input"));
  });
}

// ------------------------------------------------------------------ sweep
async function runSweep() {
  if (!explorer.digit) return;
  $("headline").textContent = "Sweeping every family...";
  try {
    const result = await postJson("/api/sweep", { digit: explorer.digit, label: explorer.label, target: explorer.target });
    explorer.sweep = result;
    showSweep(result);
  } catch (error) {
    $("headline").textContent = "";
    say(error.message, true);
  }
}

function element(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

function showSweep(result) {
  $("headline").textContent = result.headline;
  const holder = $("charts");
  holder.replaceChildren();
  const legend = document.createElement("div");
  legend.className = "legend";
  result.models.forEach((name, index) => {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = `swatch c${index % 4}`;
    item.append(swatch, document.createTextNode(name));
    legend.append(item);
  });
  holder.append(legend);
  const families = [...result.families];
  families.sort((a, b) => (b.name === result.flips_first) - (a.name === result.flips_first));
  const [width, height, left, bottom] = [200, 80, 4, 14];
  families.forEach((entry) => {
    const box = document.createElement("div");
    box.className = entry.name === result.flips_first ? "chart first" : "chart";
    box.dataset.family = entry.name;
    const title = document.createElement("h3");
    title.textContent = `${entry.name} (${entry.unit})`;
    box.append(title);
    const lo = Math.min(...entry.magnitudes), hi = Math.max(...entry.magnitudes);
    const x = (m) => left + (width - 2 * left) * (hi === lo ? 0.5 : (m - lo) / (hi - lo));
    const y = (p) => 4 + (height - bottom - 4) * (1 - p);
    const svg = element("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
      "aria-label": `p(true class) against ${entry.name} magnitude` });
    svg.append(element("line", { x1: left, x2: width - left, y1: y(0.5), y2: y(0.5), stroke: "#d0d5dd", "stroke-dasharray": "2 2" }));
    svg.append(element("line", { x1: x(0), x2: x(0), y1: y(1), y2: y(0), stroke: "#d0d5dd" }));
    const axis = element("text", { x: left, y: height - 2, "font-size": 9, fill: "#5b6475" });
    axis.textContent = format(lo);
    const axisHigh = element("text", { x: width - left, y: height - 2, "font-size": 9, fill: "#5b6475", "text-anchor": "end" });
    axisHigh.textContent = format(hi);
    svg.append(axis, axisHigh);
    const notes = [];
    result.models.forEach((name, index) => {
      const colour = COLOURS[index % COLOURS.length];
      const points = entry.magnitudes.map((m, i) => `${x(m).toFixed(1)},${y(entry.p_true[name][i]).toFixed(1)}`).join(" ");
      svg.append(element("polyline", { points, fill: "none", stroke: colour, "stroke-width": 1.6 }));
      const critical = entry.critical[name];
      if (critical) {
        svg.append(element("line", { x1: x(critical.signed), x2: x(critical.signed), y1: y(1), y2: y(0), stroke: colour, "stroke-dasharray": "3 2", class: "critical" }));
        const i = entry.magnitudes.indexOf(critical.signed);
        svg.append(element("circle", { cx: x(critical.signed), cy: y(entry.p_true[name][i]), r: 3, fill: "#d1242f" }));
        notes.push(`${name}: ${critical.from}→${critical.to} at ${format(critical.signed)}`);
      } else {
        notes.push(`${name}: no flip`);
      }
    });
    box.append(svg);
    const note = document.createElement("p");
    note.textContent = notes.join("; ");
    box.append(note);
    holder.append(box);
  });
}

// ------------------------------------------------------------------ start
async function start() {
  clearPad();
  for (const id of ["label", "morph-target"]) {
    for (let k = 0; k < 10; k++) {
      const option = document.createElement("option");
      option.value = String(k);
      option.textContent = String(k);
      $(id).append(option);
    }
  }
  $("clear").addEventListener("click", clearPad);
  $("upload").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) sendPicture(file, file.type, `uploaded ${file.name}`);
  });
  $("mnist-load").addEventListener("click", async () => {
    try {
      setDigit(await call(`/api/digit/mnist?index=${encodeURIComponent($("mnist-index").value)}`), false);
    } catch (error) { say(error.message, true); }
  });
  $("surprise").addEventListener("click", async () => {
    try { setDigit(await call("/api/digit/surprise"), false); } catch (error) { say(error.message, true); }
  });
  $("label").addEventListener("change", () => {
    explorer.label = $("label").value === "" ? null : Number($("label").value);
    requestPrediction();
    runSweep();
  });
  $("morph-target").addEventListener("change", () => {
    explorer.target = $("morph-target").value === "" ? null : Number($("morph-target").value);
    requestPrediction();
    runSweep();
  });
  $("reset").addEventListener("click", resetSliders);
  $("sweep-run").addEventListener("click", runSweep);
  $("save").addEventListener("click", async () => {
    if (!explorer.digit) { say("Draw, upload or load a digit first.", true); return; }
    if (explorer.label === null) { say("Choose the digit's true class to save it.", true); return; }
    try {
      const saved = await postJson("/api/save", { digit: explorer.digit, label: explorer.label });
      explorer.saved = saved.file;
      say(`Saved ${saved.file} in ${saved.folder}`);
    } catch (error) { say(error.message, true); }
  });
  try {
    explorer.config = await call("/api/config");
    buildSliders(explorer.config.sliders);
    $("surprise").hidden = !explorer.config.surprise;
    explorer.ready = true;
  } catch (error) {
    say(error.message, true);
  }
}

start();
