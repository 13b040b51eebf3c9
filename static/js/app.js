// Renders Plotly figures that the server sends as data-figure JSON, and drives the playground's
// step player (Back / Step / slider / Play over server-sent events / Pause) and its tabs.
"use strict";

const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

function renderPlot(el) {
  // Hidden plots render when shown; live plots are drawn by training.js as their data streams in.
  if (!window.Plotly || el.dataset.rendered || el.dataset.live || el.offsetParent === null) return;
  const fig = JSON.parse(el.dataset.figure);
  el.dataset.rendered = "pending";
  Plotly.newPlot(el, fig.data, fig.layout, PLOT_CONFIG).then(() => { el.dataset.rendered = "true"; });
}

function renderPlots(root) {
  root = root || document;
  if (root.matches && root.matches(".plot[data-figure]")) renderPlot(root);
  root.querySelectorAll(".plot[data-figure]").forEach(renderPlot);
}

// ---- playground state --------------------------------------------------------------------

function stateForm() { return document.getElementById("state-form"); }

function stateQuery(extra) {
  const params = new URLSearchParams(new FormData(stateForm()));
  for (const [k, v] of Object.entries(extra || {})) params.set(k, v);
  return params;
}

// The step the learner asked for last (the hidden form field), so quick clicks add up even
// before the previous step's partial has arrived.
function currentStep() {
  const input = document.getElementById("step-input");
  return input ? Number(input.value) : 0;
}

function shownStep() {
  const layout = document.querySelector("#step-view .step-layout");
  return layout ? Number(layout.dataset.step) : 0;
}

function totalSteps() {
  const player = document.getElementById("player");
  return player ? Number(player.dataset.total) : 0;
}

function syncStep(step) {
  const input = document.getElementById("step-input");
  const slider = document.getElementById("step-slider");
  if (input) input.value = step;
  if (slider) slider.value = step;
  const url = new URL(window.location.href);
  url.search = stateQuery({ step }).toString();
  history.replaceState(history.state, "", url);
  syncLanguageLinks();
}

// The header's language links carry the page's state: after every change of the URL they follow it.
function syncLanguageLinks() {
  document.querySelectorAll(".lang-switch a[href^='?']").forEach((a) => {
    const lang = new URLSearchParams(a.getAttribute("href").slice(1)).get("lang");
    const params = new URLSearchParams(window.location.search);
    if (lang) params.set("lang", lang);
    a.setAttribute("href", "?" + params.toString());
  });
}

function goToStep(step) {
  const total = totalSteps();
  if (!total) return;
  step = Math.max(0, Math.min(total - 1, step));
  syncStep(step);
  fetchStep(step);
}

// Each step request aborts the one before, so the view always ends on the step asked for last.
let stepRequest = null;

async function fetchStep(step) {
  if (stepRequest) stepRequest.abort();
  const request = (stepRequest = new AbortController());
  try {
    const response = await fetch("/playground/step?" + stateQuery({ step }).toString(),
                                 { headers: { "HX-Request": "true" }, signal: request.signal });
    const html = await response.text();
    if (request !== stepRequest) return;
    const view = document.getElementById("step-view");
    view.innerHTML = html;
    htmx.process(view);
    showHead(view);
    renderPlots(view);
  } catch (error) {
    if (error.name !== "AbortError") throw error;
  }
}

// ---- Play over server-sent events ----------------------------------------------------------

function playing() { return !!document.querySelector("#stream-slot [sse-connect]"); }

function setPlayingUI(on) {
  const play = document.getElementById("btn-play");
  const pause = document.getElementById("btn-pause");
  if (play) play.hidden = on;
  if (pause) pause.hidden = !on;
  if (on && pause) pause.focus(); else if (!on && play && document.activeElement === pause) play.focus();
}

function play() {
  if (playing()) return;
  let start = shownStep();
  if (start >= totalSteps() - 1) start = 0; // at the end: play again from the start
  const speed = document.getElementById("speed").value;
  const slot = document.getElementById("stream-slot");
  const stream = document.createElement("div");
  stream.setAttribute("hx-ext", "sse");
  stream.setAttribute("sse-connect", "/playground/stream?" + stateQuery({ step: start, interval_ms: speed }));
  stream.setAttribute("sse-swap", "step");
  stream.setAttribute("sse-close", "done");
  stream.setAttribute("hx-target", "#step-view");
  stream.setAttribute("hx-swap", "innerHTML");
  slot.replaceChildren(stream);
  htmx.process(stream);
  setPlayingUI(true);
}

function pause() {
  const slot = document.getElementById("stream-slot");
  if (slot) slot.replaceChildren(); // removing the element closes its EventSource
  setPlayingUI(false);
}

// ---- wiring --------------------------------------------------------------------------------

document.addEventListener("click", (event) => {
  const target = event.target.closest("button, .arch-box");
  if (!target) return;
  if (target.id === "btn-back") { pause(); goToStep(currentStep() - 1); }
  else if (target.id === "btn-step") { pause(); goToStep(currentStep() + 1); }
  else if (target.id === "btn-play") play();
  else if (target.id === "btn-pause") pause();
  else if (target.classList.contains("arch-box") && target.dataset.step) { pause(); goToStep(Number(target.dataset.step)); }
  else if (target.getAttribute("role") === "tab") selectTab(target);
});

document.addEventListener("keydown", (event) => {
  const box = event.target.closest && event.target.closest(".arch-box");
  if (box && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); box.click(); return; }
  const tab = event.target.closest && event.target.closest("[role=tab]");
  if (tab && (event.key === "ArrowRight" || event.key === "ArrowLeft")) {
    const tabs = [...tab.parentElement.querySelectorAll("[role=tab]")];
    const next = tabs[(tabs.indexOf(tab) + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    selectTab(next); next.focus(); event.preventDefault(); return;
  }
  const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(event.target.tagName) && event.target.type !== "range" && event.target.type !== "radio";
  if (typing || !document.getElementById("player")) return;
  if (event.key === "ArrowRight" && event.target.type !== "range") { pause(); goToStep(currentStep() + 1); event.preventDefault(); }
  if (event.key === "ArrowLeft" && event.target.type !== "range") { pause(); goToStep(currentStep() - 1); event.preventDefault(); }
});

// Highlight the switches that differ from how the model was trained, as they change.
// While every residual connection is off, the per-sublayer residual switches have no effect: dim them.
function markChangedSwitches() {
  document.querySelectorAll(".switch[data-trained]").forEach((el) => {
    const control = el.querySelector("input:checked, select");
    el.classList.toggle("is-changed", !!control && control.value !== el.dataset.trained);
  });
  document.querySelectorAll(".switch[data-overridden-note]").forEach((el) => {
    const master = el.parentElement.querySelector('[id$="switch-residual"] input:checked');
    const overridden = !!master && master.value === "off";
    el.classList.toggle("is-overridden", overridden);
    el.title = overridden ? el.dataset.overriddenNote : "";
  });
}

// The large attention map shows one head; the choice is kept while the learner steps on.
let selectedHead = 0;

function showHead(root) {
  const views = (root || document).querySelectorAll(".head-view");
  if (!views.length) return;
  const head = Math.min(selectedHead, views.length - 1);
  views.forEach((view) => { view.hidden = Number(view.dataset.head) !== head; });
  const radio = document.querySelector(`input[name=head-pick][value="${head}"]`);
  if (radio) radio.checked = true;
  renderPlots(document.querySelector(".head-view:not([hidden])"));
}

document.addEventListener("change", (event) => {
  if (event.target.name === "head-pick") { selectedHead = Number(event.target.value); showHead(); return; }
  if (event.target.closest && event.target.closest(".switch")) markChangedSwitches();
  if (event.target.id === "step-slider") { pause(); goToStep(Number(event.target.value)); }
  if (event.target.id === "speed" && playing()) { pause(); play(); }
});

// The slider and speed live outside the state form's meaning: keep them from re-running the model.
document.addEventListener("htmx:confirm", (event) => {
  const trigger = event.detail.triggerEvent;
  if (trigger && trigger.target && (trigger.target.id === "step-slider" || trigger.target.id === "speed")) event.preventDefault();
});

function selectTab(tab) {
  const tabs = tab.parentElement.querySelectorAll("[role=tab]");
  tabs.forEach((t) => {
    const selected = t === tab;
    t.setAttribute("aria-selected", selected ? "true" : "false");
    t.tabIndex = selected ? 0 : -1;
    const panel = document.getElementById(t.getAttribute("aria-controls"));
    if (panel) panel.hidden = !selected;
  });
  const panel = document.getElementById(tab.getAttribute("aria-controls"));
  renderPlots(panel);
}

document.addEventListener("htmx:sseMessage", () => {
  const step = shownStep();
  syncStep(step);
  if (step >= totalSteps() - 1) pause();
});
document.addEventListener("htmx:sseClose", () => setPlayingUI(false));
document.addEventListener("htmx:beforeRequest", (event) => {
  // A new model run (switch change) stops Play: the stream belongs to the old state.
  const elt = event.detail.elt;
  if (elt && (elt.id === "state-form" || elt.id === "model-select" || elt.closest("#state-form"))) pause();
});
document.addEventListener("htmx:pushedIntoHistory", syncLanguageLinks);
document.addEventListener("htmx:replacedInHistory", syncLanguageLinks);

// A model re-run answers with the step asked for when it was sent; if the learner stepped on
// meanwhile, fetch the step they are at now.
document.addEventListener("htmx:afterSwap", (event) => {
  const id = event.detail.target && event.detail.target.id;
  if (id === "results" && !playing() && currentStep() !== shownStep()) {
    goToStep(currentStep());
  }
});

htmx.onLoad((root) => { showHead(root); renderPlots(root); });
window.addEventListener("DOMContentLoaded", () => renderPlots(document));
