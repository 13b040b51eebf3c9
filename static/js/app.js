// Renders Plotly figures that the server sends as data-figure JSON, and drives the playground's
// step player (Back / Step / slider / Play over server-sent events / Pause) and its tabs.
"use strict";

const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

function renderPlot(el) {
  // Hidden plots render when shown; live plots are drawn by training.js as their data streams in.
  if (!window.Plotly || el.dataset.rendered || el.dataset.live || el.offsetParent === null) return;
  if (el.dataset.lazy && !el.dataset.near) { drawWhenNear(el); return; }
  const fig = JSON.parse(el.dataset.figure);
  el.dataset.rendered = "pending";
  const layout = presenting() ? enlarged(fig.layout) : fig.layout;
  Plotly.newPlot(el, fig.data, fitLayout(el, layout), PLOT_CONFIG).then(() => keepPlotTall(el)).then(() => {
    el.dataset.rendered = "true";
    highlightOnHover(el);
  });
}

// Lazy plots (a page of many charts, such as the claims) are drawn once they come within a screen's height of
// the viewport, so the page does not draw them all at load.
const nearViewport = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
  entries.forEach((entry) => {
    if (!entry.isIntersecting) return;
    nearViewport.unobserve(entry.target);
    entry.target.dataset.near = "true";
    renderPlot(entry.target);
  });
}, { rootMargin: "100% 0px" }) : null;

function drawWhenNear(el) {
  if (nearViewport) { nearViewport.observe(el); return; }
  el.dataset.near = "true";
  renderPlot(el);
}

// A figure whose legend wraps onto many rows (on a phone) is made taller, to keep the plot area at least
// layout.meta.min_plot_height px high (Plotly takes the legend's room from the plot otherwise).
function keepPlotTall(el) {
  const min = el.layout && el.layout.meta && el.layout.meta.min_plot_height;
  const size = el._fullLayout && el._fullLayout._size;
  if (!min || !size || size.h >= min) return Promise.resolve();
  return Plotly.relayout(el, { height: el.layout.height + Math.ceil(min - size.h) });
}

// ---- titles that fit the plot's width ------------------------------------------------------

// Rough width of text in px: CJK characters are about one em wide, others about 0.55 em.
function textWidth(text, size) {
  let width = 0;
  for (const ch of text.replace(/<[^>]+>/g, "").replace(/&[a-z]+;/g, "x")) {
    width += ch.codePointAt(0) >= 0x2e80 ? size : size * 0.56;
  }
  return width;
}

// Break text into lines no wider than `room` px: at spaces, or between any two CJK characters.
function wrapText(text, size, room) {
  return text.split(/<br\s*\/?>/).map((paragraph) => {
    const words = paragraph.match(/[\u2e80-\uffff][，。、：；）」]?|[^\s\u2e80-\uffff]+\s*|\s+/g) || [paragraph];
    const lines = [];
    let line = "";
    words.forEach((word) => {
      if (line && textWidth(line + word, size) > room) { lines.push(line.trimEnd()); line = word.trimStart(); }
      else line += word;
    });
    lines.push(line.trimEnd());
    return lines.join("<br>");
  }).join("<br>");
}

// The layout with its title and subtitle wrapped to the element's width and the top margin grown to hold
// them: Plotly never wraps a title, it cuts it off at the edge. Keeps the server's text to refit on resize.
function fitLayout(el, layout) {
  const title = layout.title;
  if (!title || typeof title !== "object" || !title.text) return layout;
  if (!el.titleSource) {
    el.titleSource = { text: title.text, subtitle: title.subtitle ? title.subtitle.text : "", top: layout.margin ? layout.margin.t : 40 };
  }
  const source = el.titleSource;
  const margin = layout.margin || {};
  // A title placed on the plot area (xref "paper") starts after the left margin, which automargin may grow a little
  const inset = title.xref === "paper" ? (margin.l ?? 80) + (margin.r ?? 80) + 24 : 16;
  const room = Math.max(120, (el.clientWidth || 600) - inset);
  const size = (title.font && title.font.size) || 14;
  const text = wrapText(source.text, size, room);
  const extra = (text.match(/<br>/g) || []).length;
  title.text = text;
  let subExtra = 0;
  if (title.subtitle) {
    const subSize = (title.subtitle.font && title.subtitle.font.size) || 11;
    const sub = wrapText(source.subtitle, subSize, room);
    subExtra = (sub.match(/<br>/g) || []).length - (source.subtitle.match(/<br>/g) || []).length;
    title.subtitle.text = sub;
  }
  layout.margin = { ...margin, t: source.top + 18 * extra + 15 * subExtra };
  if (layout.height) {
    if (!source.height) source.height = layout.height;
    layout.height = source.height + 18 * extra + 15 * subExtra;
  }
  return layout;
}

let refitTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(refitTimer);
  refitTimer = setTimeout(() => {
    document.querySelectorAll(".plot[data-rendered=true], .plot.js-plotly-plot").forEach((el) => {
      if (!el.layout || !el.titleSource || el.offsetParent === null) return;
      const layout = fitLayout(el, { title: { ...el.layout.title }, margin: { ...el.layout.margin }, height: el.layout.height });
      if (layout.title.text !== el.layout.title.text || layout.margin.t !== el.layout.margin.t) {
        Plotly.relayout(el, { title: layout.title, "margin.t": layout.margin.t, height: layout.height })
          .then(() => keepPlotTall(el));
      }
    });
  }, 200);
});

// ---- attention maps: hovering a cell outlines its row (query) and column (key) in every head ----------

const HIGHLIGHT = "hover-highlight";

function highlightOnHover(el) {
  const meta = el.layout && el.layout.meta;
  if (!meta || meta.hover !== "row-column" || el.highlightWired) return;
  el.highlightWired = true;
  let shown = "";
  el.on("plotly_hover", (event) => {
    const point = event.points && event.points[0];
    if (!point || point.data.type !== "heatmap") return;
    const key = `${point.x},${point.y}`;
    if (key === shown) return;
    shown = key;
    const style = { type: "rect", name: HIGHLIGHT, layer: "above", line: { color: "#D55E00", width: 2 },
                    fillcolor: "rgba(255,255,255,0.15)" };
    const shapes = (el.layout.shapes || []).filter((s) => s.name !== HIGHLIGHT);
    el.data.filter((t) => t.type === "heatmap").forEach((t) => {
      const xa = t.xaxis || "x", ya = t.yaxis || "y";
      shapes.push({ ...style, xref: `${xa} domain`, x0: 0, x1: 1, yref: ya, y0: point.y - 0.5, y1: point.y + 0.5 });
      shapes.push({ ...style, xref: xa, x0: point.x - 0.5, x1: point.x + 0.5, yref: `${ya} domain`, y0: 0, y1: 1 });
    });
    Plotly.relayout(el, { shapes });
  });
  el.on("plotly_unhover", () => {
    shown = "";
    Plotly.relayout(el, { shapes: (el.layout.shapes || []).filter((s) => s.name !== HIGHLIGHT) });
  });
}

// ---- log axes: at least three round ticks (the same rule as the server's figures) --------------

function logTickValues(values) {
  const positive = values.filter((v) => Number.isFinite(v) && v > 0);
  if (!positive.length) return [];
  const low = Math.min(...positive), high = Math.max(...positive);
  if (Math.log10(high) - Math.log10(low) > 4) {  // decades; over many, every second or third one
    const first = Math.floor(Math.log10(low)), last = Math.ceil(Math.log10(high));
    const step = Math.max(1, Math.ceil((last - first) / 7));
    const ticks = [];
    for (let k = Math.floor(first / step) * step; k <= Math.ceil(last / step) * step; k += step) ticks.push(Number(`1e${k}`));
    return ticks;
  }
  let series = [], below = 0, above = 0;
  for (const mantissas of [[1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
    series = [];
    for (let k = Math.floor(Math.log10(low)) - 1; k <= Math.ceil(Math.log10(high)) + 1; k++) {
      mantissas.forEach((m) => series.push(Number(`${m}e${k}`)));
    }
    below = series.reduce((best, t, i) => (t <= low * (1 + 1e-9) ? i : best), 0);
    above = series.findIndex((t) => t >= high * (1 - 1e-9));
    if (above - below >= 2) return series.slice(below, above + 1);
  }
  return above > below ? series.slice(below, above + 2) : series.slice(below - 1, above + 2);
}

// A log axis's ticks and range for these values (nothing to change without positive values).
function logAxis(values) {
  const ticks = logTickValues(values);
  if (!ticks.length) return {};
  return { tickmode: "array", tickvals: ticks, ticktext: ticks.map((t) => String(Number(t.toPrecision(6)))),
           range: [Math.log10(ticks[0]), Math.log10(ticks[ticks.length - 1])], autorange: false };
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
  if (presenting()) url.searchParams.set("present", "1");
  history.replaceState(history.state, "", url);
  syncLanguageLinks();
  syncPresentToggle();
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

// A switch change redraws every tab: the learner stays on the tab they were reading (a tab drawn when opened
// loads for the new state then).
let openTab = null;
document.addEventListener("htmx:beforeSwap", (event) => {
  if (event.detail.target && event.detail.target.id === "results") {
    const selected = document.querySelector("#results [role=tab][aria-selected=true]");
    openTab = selected ? selected.id : null;
  }
});
document.addEventListener("htmx:afterSwap", (event) => {
  if (!event.detail.target || event.detail.target.id !== "results" || !openTab) return;
  const tab = document.getElementById(openTab);
  if (tab && tab.getAttribute("aria-selected") !== "true") selectTab(tab);
});

// A GPT's samples belong to the line they continue: another line (or model) empties them.
document.addEventListener("htmx:afterSwap", (event) => {
  if (!event.detail.target || event.detail.target.id !== "results") return;
  const drawn = document.querySelector("#samples [data-line]");
  const input = document.getElementById("input");
  if (drawn && (!input || drawn.dataset.line !== input.value)) drawn.remove();
});

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

// ---- presentation mode (?present=1): kept in every address the page goes to ---------------------

const PRESENT_SCALE = 1.35;  // type and figures, for the back rows of a lecture hall

function enlarged(layout) {
  const font = { ...(layout.font || {}), size: Math.round(((layout.font && layout.font.size) || 12) * PRESENT_SCALE) };
  const out = { ...layout, font };
  if (layout.height) out.height = Math.round(layout.height * PRESENT_SCALE);
  if (layout.title && typeof layout.title === "object") {
    const size = (layout.title.font && layout.title.font.size) || 14;
    out.title = { ...layout.title, font: { ...(layout.title.font || {}), size: Math.round(size * PRESENT_SCALE) } };
  }
  return out;
}

function presenting() {
  return document.body.classList.contains("present");
}

function withPresent(href) {
  const url = new URL(href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/static") || url.searchParams.has("present")) return null;
  url.searchParams.set("present", "1");
  return url.pathname + url.search + url.hash;
}

function keepPresentInLinks(root) {
  if (!presenting()) return;
  for (const a of root.querySelectorAll("a[href]")) {
    if (a.classList.contains("present-toggle")) continue;
    const href = withPresent(a.getAttribute("href"));
    if (href) a.setAttribute("href", href);
  }
}

function keepPresentInAddress() {
  if (!presenting()) return;
  const href = withPresent(location.href);
  if (href) history.replaceState(history.state, "", href);
  syncLanguageLinks();
  syncPresentToggle();
}

// The toggle leaves (or enters) presentation mode on the page as it is now, not as it was first loaded.
function syncPresentToggle() {
  const toggle = document.querySelector(".present-toggle");
  if (!toggle) return;
  const url = new URL(location.href);
  if (presenting()) url.searchParams.delete("present");
  else url.searchParams.set("present", "1");
  toggle.setAttribute("href", url.pathname + url.search);
}

document.addEventListener("DOMContentLoaded", () => keepPresentInLinks(document));
document.addEventListener("htmx:afterSwap", (event) => keepPresentInLinks(event.target));
document.addEventListener("htmx:pushedIntoHistory", keepPresentInAddress);
document.addEventListener("htmx:replacedInHistory", keepPresentInAddress);

// A class's teacher page keeps its key out of the address bar (static/js/class.js): reloaded, or reached by a
// language link, without it, the page is refused; the key this tab kept is put back and the page asked again.
(function restoreClassKey() {
  const match = location.pathname.match(/^\/class\/([A-Z0-9]{8})$/);
  if (!match || new URLSearchParams(location.search).has("key")) return;
  let key = null;
  try { key = sessionStorage.getItem(`addnorm.class-key.${match[1]}`); } catch { return; }
  if (!key) return;
  const url = new URL(location.href);
  url.searchParams.set("key", key);
  location.replace(url);
})();
