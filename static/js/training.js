// The training lab: each run card listens to its runs' server-sent events (one per seed) and redraws its
// curves (loss, accuracies; with several seeds their mean and range) and the gradient heatmap (steps ×
// layers) at most five times a second.
"use strict";

const RUN_REDRAW_MS = 200;
// The final run statuses, as the server names them (templates/partials/status_words.html).
const WORDS = document.getElementById("status-words").dataset;
const FINAL = WORDS.final.split(" ");

function attachRun(card) {
  if (card.dataset.attached) return;
  card.dataset.attached = "true";
  // One run, or several seeds trained together: each seed streams its own run; the card draws their mean
  // with the range over seeds as a band.
  const ids = (card.dataset.seedRuns || card.dataset.runId).split(" ");
  const total = Number(card.dataset.totalSteps);
  const perSeed = ids.map(() => []);
  const infos = ids.map(() => ({ status: card.dataset.status }));
  card.runRows = [];
  const progress = card.querySelector("progress");
  const statusEl = card.querySelector(".run-status");
  const rateEl = card.querySelector(".run-rate");
  const curves = card.querySelector(".live-curves");
  const heatmap = card.querySelector(".live-heatmap");
  let dirty = false;

  const sources = ids.map((id, k) => {
    const source = new EventSource(`/train/runs/${id}/events`);
    source.addEventListener("metrics", (event) => {
      perSeed[k].push(...JSON.parse(event.data));
      if (infos[k].status === "queued") {  // metrics flow: it trains (its "running" may have been sent before we listened)
        infos[k] = { status: "running" };
        showStatus(card, statusEl, groupStatus(infos));
      }
      dirty = true;
    });
    source.addEventListener("status", (event) => {
      infos[k] = JSON.parse(event.data);
      if (FINAL.includes(infos[k].status)) source.close();
      showStatus(card, statusEl, groupStatus(infos));
      dirty = true;
    });
    source.onerror = () => { if (FINAL.includes(infos[k].status)) source.close(); };
    return source;
  });

  const timer = setInterval(() => {
    if (!document.body.contains(card)) { clearInterval(timer); sources.forEach((s) => s.close()); return; }
    if (!dirty || !perSeed.some((rows) => rows.length)) return;
    dirty = false;
    perSeed.forEach((rows) => rows.sort((a, b) => a.step - b.step));
    const { rows, bands } = seedMeans(perSeed);
    card.runRows = rows;
    const ends = perSeed.map((r) => (r.length ? r[r.length - 1] : { step: 0, elapsed_s: 0 }));
    const slowest = ends.reduce((a, b) => (b.step < a.step ? b : a));
    progress.value = slowest.step;
    const rate = slowest.step / Math.max(slowest.elapsed_s, 1e-6);
    const parts = [`${slowest.step} / ${total}`, fill(WORDS.rate, { rate: rate.toFixed(1) })];
    if (!FINAL.includes(card.dataset.status)) parts.push(timeLeft(total - slowest.step, slowest.step, slowest.elapsed_s));
    rateEl.textContent = parts.join(" · ");
    drawCurves(curves, rows, ids.length > 1 ? bands : null, card.dataset);
    drawHeatmap(heatmap, rows, (partnerOf(card) || {}).runRows);
    card.dispatchEvent(new CustomEvent("run-update", { bubbles: true }));
  }, RUN_REDRAW_MS);
}

// The card's status: training while any seed trains; once all have ended, "done" only if every seed is.
function groupStatus(infos) {
  if (!infos.every((info) => FINAL.includes(info.status))) {
    return infos.find((info) => info.status === "running") || infos.find((info) => !FINAL.includes(info.status));
  }
  return infos.find((info) => info.status !== "done") || infos[0];
}

function showStatus(card, statusEl, info) {
  card.dataset.status = info.status;
  statusEl.textContent = statusText(info);
  if (FINAL.includes(info.status)) {
    const stop = card.querySelector("button.stop");
    if (stop) stop.remove();
    const inspect = card.querySelector(".inspect-link");
    if (inspect && info.status === "done") inspect.hidden = false;
  }
}

const hasValue = (v) => v !== null && v !== undefined;
const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;

const HELDOUT_KEYS = ["heldout_seq_accuracy", "heldout_loss"];

// Per step: the mean over the seeds that reached it (a held-out figure only where every such seed was
// evaluated), and the min and max as bands.
function seedMeans(perSeed) {
  const bySteps = new Map();
  perSeed.forEach((rows) => rows.forEach((r) => {
    if (!bySteps.has(r.step)) bySteps.set(r.step, []);
    bySteps.get(r.step).push(r);
  }));
  const rows = [];
  const bands = { loss: [], heldout_seq_accuracy: [], heldout_loss: [] };
  [...bySteps.keys()].sort((a, b) => a - b).forEach((step) => {
    const group = bySteps.get(step);
    const losses = group.map((r) => r.loss).filter(Number.isFinite);
    const stacks = Object.keys(group[0].layer_grad_norms || {});
    const grads = Object.fromEntries(stacks.map((stack) => [stack, group[0].layer_grad_norms[stack].map(
      (_, i) => mean(group.map((r) => r.layer_grad_norms[stack][i]).filter(Number.isFinite)))]));
    const row = { step, loss: losses.length ? mean(losses) : null, token_accuracy: mean(group.map((r) => r.token_accuracy)),
      elapsed_s: Math.max(...group.map((r) => r.elapsed_s)), layer_grad_norms: grads };
    HELDOUT_KEYS.forEach((key) => {  // whole-answer accuracy, or a text's held-out loss
      const held = group.map((r) => r[key]);
      const evaluated = held.every(hasValue);
      row[key] = evaluated ? mean(held) : null;
      if (evaluated) bands[key].push([step, Math.min(...held), Math.max(...held)]);
    });
    rows.push(row);
    if (losses.length) bands.loss.push([step, Math.min(...losses), Math.max(...losses)]);
  });
  return { rows, bands };
}

// About how long the rest takes at the pace so far (`done` steps in `elapsed` seconds), in the page's language.
function timeLeft(remaining, done, elapsed) {
  if (done <= 0 || elapsed <= 0) return WORDS.etaEstimating;
  return fill(WORDS.etaLeft, { time: duration((remaining * elapsed) / done) });
}

function duration(seconds) {
  if (seconds < 60) return fill(WORDS.etaS, { n: Math.max(1, Math.round(seconds)) });
  if (seconds < 3600) return fill(WORDS.etaMin, { n: Math.round(seconds / 60) });
  return fill(WORDS.etaH, { h: Math.floor(seconds / 3600), m: Math.floor((seconds % 3600) / 60) });
}

function statusText(info) {
  const word = WORDS[info.status] || info.status;
  if (info.status === "queued" && info.position) return `${word} (#${info.position})`;
  return ["failed", "cancelled"].includes(info.status) && info.message ? `${word}: ${info.message}` : word;
}

function figureOf(el) {
  return JSON.parse(el.dataset.figure);
}

function drawCurves(el, rows, bands, labels) {
  const fig = figureOf(el);
  const steps = rows.map((r) => r.step);
  const [loss, tok, held] = fig.data;
  const key = held.meta || "heldout_seq_accuracy";  // a text's held-out figure is its loss
  const evals = rows.filter((r) => hasValue(r[key]));
  loss.x = steps; loss.y = rows.map((r) => r.loss);
  tok.x = steps; tok.y = rows.map((r) => r.token_accuracy);
  held.x = evals.map((r) => r.step); held.y = evals.map((r) => r[key]);
  let data = fig.data;
  if (bands) {  // several seeds: each mean line over the band of its seeds' range
    [loss, held].forEach((trace) => { trace.name = `${trace.name} (${labels.meanLabel})`; });
    data = [...band(bands.loss, loss, labels.bandLabel), loss, tok, ...band(bands[key], held, labels.bandLabel), held];
  }
  const onLossAxis = key === "heldout_loss" ? [...held.y, ...(bands ? bands[key].flatMap((p) => [p[1], p[2]]) : [])] : [];
  const losses = [...loss.y, ...(bands ? bands.loss.flatMap((p) => [p[1], p[2]]) : []), ...onLossAxis];
  Object.assign(fig.layout.yaxis, logAxis(losses));
  Plotly.react(el, data, fitLayout(el, fig.layout), { displaylogo: false, responsive: true });
}

// A filled band from min to max: the lower edge, then the upper edge filled down to it.
function band(points, trace, label) {
  const common = { type: "scatter", mode: "lines", x: points.map((p) => p[0]), yaxis: trace.yaxis, hoverinfo: "skip",
    line: { width: 0, color: trace.line.color } };
  return [
    { ...common, y: points.map((p) => p[1]), showlegend: false },
    { ...common, y: points.map((p) => p[2]), fill: "tonexty", fillcolor: translucent(trace.line.color),
      name: `${trace.name.split(" (")[0]}: ${label}` },
  ];
}

function translucent(hex) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, 0.2)`;
}

// A row's layer gradients in stack order; a GPT has only a decoder stack, a BERT only an encoder stack.
const STACKS = ["encoder", "decoder"];
const layerGrads = (r) => STACKS.flatMap((stack) => r.layer_grad_norms[stack] || []);
// The gradients of every layer and step of these rows.
const gradValues = (rows) => rows.flatMap(layerGrads);

// `shared`: more rows whose gradients share the colour scale (the other run of an A/B pair).
function drawHeatmap(el, rows, shared) {
  const fig = figureOf(el);
  const names = [];
  STACKS.forEach((stack) => (rows[0].layer_grad_norms[stack] || []).forEach((_, i) => names.push(`${stack === "encoder" ? "Enc" : "Dec"} ${i + 1}`)));
  const z = names.map((_, j) => rows.map((r) => {
    const v = layerGrads(r)[j];
    return v > 0 ? Math.log10(v) : null;
  }));
  const trace = fig.data[0];
  trace.x = rows.map((r) => r.step);
  trace.y = names.map((_, i) => i);
  trace.z = z;
  const wrap = el.closest("[data-title]");
  if (wrap) fig.layout.title.text = wrap.dataset.title;
  fig.layout.yaxis = Object.assign(fig.layout.yaxis || {}, { tickmode: "array", tickvals: names.map((_, i) => i), ticktext: names });
  const scale = logAxis([...gradValues(rows), ...gradValues(shared || [])]);
  if (scale.tickvals) {  // colour is log10 of the gradient: round values as ticks, one range for A and B
    Object.assign(trace, { zmin: scale.range[0], zmax: scale.range[1], zauto: false });
    trace.colorbar = { ...trace.colorbar, tickvals: scale.tickvals.map(Math.log10), ticktext: scale.ticktext };
  }
  Plotly.react(el, fig.data, fitLayout(el, fig.layout), { displaylogo: false, responsive: true });
}

// ---- A/B: both runs' curves in one chart, and a one-line verdict when both have finished ----

function stepReaching(rows, target) {
  const hit = rows.find((r) => r.heldout_seq_accuracy !== null && r.heldout_seq_accuracy !== undefined && r.heldout_seq_accuracy >= target);
  return hit ? hit.step : null;
}

function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, key) => (key in values ? values[key] : `{${key}}`));
}

// A text's runs have no answer to reach: their last held-out loss, in bits per character.
function textVerdict(section, a, b) {
  const lastBits = (rows) => {
    const evals = rows.filter((r) => hasValue(r.heldout_loss));
    return evals.length ? (evals[evals.length - 1].heldout_loss / Math.LN2).toFixed(3) : "—";
  };
  return fill(section.dataset.resultText, { a_final: lastBits(a.runRows), b_final: lastBits(b.runRows) });
}

function abVerdict(section, a, b, key) {
  if (key === "heldout_loss") return textVerdict(section, a, b);
  const target = Number(section.dataset.target);
  const pct = `${Math.round(target * 100)}%`;
  const atA = stepReaching(a.runRows, target);
  const atB = stepReaching(b.runRows, target);
  const lastAcc = (rows) => {
    const evals = rows.filter((r) => r.heldout_seq_accuracy !== null && r.heldout_seq_accuracy !== undefined);
    return evals.length ? `${(evals[evals.length - 1].heldout_seq_accuracy * 100).toFixed(1)}%` : "—";
  };
  if (atA !== null && atB !== null) {
    return atA === atB ? fill(section.dataset.resultTie, { target: pct, at: atA }) : fill(section.dataset.resultBoth, { target: pct, a: atA, b: atB });
  }
  if (atA === null && atB === null) {
    return fill(section.dataset.resultNone, { target: pct, a_final: lastAcc(a.runRows), b_final: lastAcc(b.runRows) });
  }
  const [first, other, at, otherCard] = atA !== null ? ["A", "B", atA, b] : ["B", "A", atB, a];
  const steps = otherCard.runRows.length ? otherCard.runRows[otherCard.runRows.length - 1].step : 0;
  return fill(section.dataset.resultOne, { first, other, at, target: pct, steps });
}

function drawOverlay(section) {
  const a = document.getElementById(`run-${section.dataset.a}`);
  const b = document.getElementById(`run-${section.dataset.b}`);
  if (!a || !b || !a.runRows || !b.runRows) return;  // with several seeds: their means
  const el = section.querySelector(".ab-overlay");
  const fig = figureOf(el);
  const [lossTemplate, , heldTemplate] = fig.data;
  const key = heldTemplate.meta || "heldout_seq_accuracy";  // a text's held-out figure is its loss
  const data = [];
  [["A", a, "solid"], ["B", b, "dash"]].forEach(([name, card, dash]) => {
    const rows = card.runRows;
    const evals = rows.filter((r) => hasValue(r[key]));
    data.push({ ...lossTemplate, name: `${name} · ${lossTemplate.name}`, x: rows.map((r) => r.step), y: rows.map((r) => r.loss),
      line: { ...lossTemplate.line, dash, color: name === "A" ? "#000000" : "#CC79A7" } });
    data.push({ ...heldTemplate, name: `${name} · ${heldTemplate.name}`, x: evals.map((r) => r.step), y: evals.map((r) => r[key]),
      line: { ...heldTemplate.line, dash, color: name === "A" ? "#0072B2" : "#E69F00" } });
  });
  Object.assign(fig.layout.yaxis, logAxis(data.filter((t) => t.yaxis === "y").flatMap((t) => t.y)));
  Plotly.react(el, data, fitLayout(el, fig.layout), { displaylogo: false, responsive: true });
  if (FINAL.includes(a.dataset.status) && FINAL.includes(b.dataset.status)) {
    section.querySelector(".ab-result").textContent = abVerdict(section, a, b, key) + section.dataset.meanNote;
  }
}

// The other run of an A/B pair (none for a single run).
function partnerOf(card) {
  const section = card.closest(".ab-card");
  return section ? [...section.querySelectorAll(".run-card")].find((other) => other !== card) : null;
}

document.addEventListener("run-update", (event) => {
  const section = event.target.closest(".ab-card");
  if (!section) return;
  drawOverlay(section);
  // the two runs' gradient heatmaps share one colour scale: the other one follows this one's new rows
  const other = partnerOf(event.target);
  if (other && other.runRows && other.runRows.length) {
    drawHeatmap(other.querySelector(".live-heatmap"), other.runRows, event.target.runRows);
  }
});

function attachAll(root) {
  root = root || document;
  if (root.matches && root.matches(".run-card[data-run-id]")) attachRun(root);
  root.querySelectorAll(".run-card[data-run-id]").forEach(attachRun);
}

htmx.onLoad(attachAll);
window.addEventListener("DOMContentLoaded", () => attachAll(document));

// The lab's form: a switch the chosen family lacks is greyed, with the reason (the playground's words).
function showFamilySwitches(form) {
  const arch = form.querySelector("select[name=arch]");
  if (!arch) return;
  form.querySelectorAll(".switch").forEach((el) => {
    const note = el.dataset[`na-${arch.value}`.replace(/-(\w)/g, (_, c) => c.toUpperCase())];
    const small = el.querySelector(".switch-note");
    el.classList.toggle("is-not-applicable", Boolean(note));
    if (small) { small.textContent = note || ""; small.hidden = !note; }
  });
}

document.addEventListener("change", (event) => {
  if (event.target.matches("select[name=arch]")) showFamilySwitches(event.target.form);
});
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form").forEach(showFamilySwitches);
});
