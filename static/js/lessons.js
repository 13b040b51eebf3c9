// Lessons: predict first (the Run button waits for a choice), then run the step's widget, then
// read the explanation. Choices and runs are kept in this browser (localStorage), so a lesson
// can be closed and resumed; formulas are typeset with the vendored KaTeX.
"use strict";

const STORE_PREFIX = "addnorm.lesson.";

function loadProgress(slug) {
  try { return JSON.parse(localStorage.getItem(STORE_PREFIX + slug)) || {}; } catch { return {}; }
}

function saveProgress(slug, progress) {
  localStorage.setItem(STORE_PREFIX + slug, JSON.stringify(progress));
}

function typeset(root) {
  if (window.renderMathInElement) {
    renderMathInElement(root, { delimiters: [{ left: "$$", right: "$$", display: true }, { left: "$", right: "$", display: false }], throwOnError: false });
  }
}

function setupLesson(article) {
  const slug = article.dataset.lesson;
  const progress = loadProgress(slug);
  article.querySelectorAll(".lesson-step").forEach((section) => {
    const id = section.dataset.step;
    const state = progress[id] || {};
    const run = section.querySelector(".run-step");
    const hint = section.querySelector(".run-hint");
    section.querySelectorAll(".predict input[type=radio]").forEach((radio) => {
      if (state.choice === radio.value) radio.checked = true;
      radio.addEventListener("change", () => {
        progress[id] = { ...(progress[id] || {}), choice: radio.value };
        saveProgress(slug, progress);
        if (run) run.disabled = false;
        if (hint) hint.hidden = true;
      });
    });
    if (state.choice && run) { run.disabled = false; if (hint) hint.hidden = true; }
    if (run) {
      run.addEventListener("click", () => {
        progress[id] = { ...(progress[id] || {}), ran: true };
        saveProgress(slug, progress);
        section.querySelectorAll(".predict input").forEach((input) => { input.disabled = true; });
      });
      if (state.ran) { // resume: show what was run before
        section.querySelectorAll(".predict input").forEach((input) => { input.disabled = true; });
        htmx.trigger(run, "click");
      }
    }
  });
  markToc(article, progress);
}

// The Run button's request carries the prediction (?choice=<id>), so the server can say whether it matched.
document.addEventListener("htmx:configRequest", (event) => {
  const run = event.detail.elt;
  if (!run.classList || !run.classList.contains("run-step")) return;
  const checked = run.closest(".lesson-step").querySelector(".predict input[type=radio]:checked");
  if (checked) event.detail.parameters.choice = checked.value;
});

function markToc(article, progress) {
  article.querySelectorAll("[data-step-link]").forEach((link) => {
    const done = (progress[link.dataset.stepLink] || {}).ran;
    link.classList.toggle("done", !!done);
  });
}

document.addEventListener("htmx:afterSwap", (event) => {
  const widget = event.detail.target.closest && event.detail.target.closest(".widget");
  if (!widget) return;
  const section = widget.closest(".lesson-step");
  const explain = section && section.querySelector(".explain");
  if (explain) explain.hidden = false;
  typeset(section);
  const article = widget.closest(".lesson");
  if (article) markToc(article, loadProgress(article.dataset.lesson));
});

function setupList() {
  document.querySelectorAll(".lesson-card[data-lesson]").forEach((card) => {
    const progress = loadProgress(card.dataset.lesson);
    const ran = Object.values(progress).filter((s) => s.ran).length;
    const el = card.querySelector(".lesson-progress");
    if (el) el.textContent = el.dataset.template.replace("{done}", ran).replace("{total}", card.dataset.steps);
  });
}

function setupClaimsTime() {
  const el = document.getElementById("computed-at");
  if (el) el.querySelector(".when").textContent = new Date(Number(el.dataset.ts) * 1000).toLocaleString();
}

window.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".lesson[data-lesson]").forEach(setupLesson);
  document.querySelectorAll(".lesson").forEach(typeset);
  setupList();
  setupClaimsTime();
});
