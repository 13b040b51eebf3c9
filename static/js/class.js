// Class sessions. The teacher's screen and the students' phones follow the class over server-sent events: a
// `stage` event says where the class is (step, revealed, ran, ended), and a screen showing another stage asks the
// server for its view again; the teacher's `tally` events (JSON numbers) update the answer count in place.
// The start page lists the classes this browser started (their teacher links live in this browser only).
// Text from other people (nicknames) only ever arrives in server-rendered, escaped HTML: nothing here builds
// markup from data.
"use strict";

const PAST_CLASSES = "addnorm.classes";
const PAST_KEPT = 20;

// Math in the lesson's text only (the .class-view): never in nicknames (the roster, "your name"), which anyone
// types; and no formula may grow past a line, whoever wrote it.
function typesetClass(root) {
  if (!window.renderMathInElement) return;
  const views = root.matches && root.matches(".class-view") ? [root] : root.querySelectorAll(".class-view");
  views.forEach((view) => renderMathInElement(view, {
    delimiters: [{ left: "$$", right: "$$", display: true }, { left: "$", right: "$", display: false }],
    throwOnError: false, maxSize: 5, maxExpand: 100 }));
}

function shownStage(view) {
  const el = view.querySelector(".class-view");
  return el ? el.dataset.stage : "";
}

// One request for the view at a time, the screen's own included (Reveal, Run, Next): a stage announced while one
// is under way is looked at again when it has been answered, and fetched only if the answer did not show it.
let screenEl = null;
let viewEl = null;
let busy = 0;
let pendingStage = null;

function refresh(stage) {
  if (busy > 0) { pendingStage = stage; return; }
  if (stage === shownStage(viewEl)) return;
  htmx.ajax("GET", screenEl.dataset.view, { target: viewEl, swap: "innerHTML" });
}

function targetsView(event) {
  const target = event.detail.target;
  return !!(viewEl && target && (target === viewEl || viewEl.contains(target)));
}

document.addEventListener("htmx:beforeRequest", (event) => { if (targetsView(event)) busy += 1; });
document.addEventListener("htmx:afterRequest", (event) => {
  if (!targetsView(event)) return;
  busy = Math.max(0, busy - 1);
  if (busy === 0 && pendingStage !== null) {
    const stage = pendingStage;
    pendingStage = null;
    refresh(stage);
  }
});

function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

let rosterTimer = null;
let joinedShown = null;

function showTally(screen, tally) {
  const answered = Number(tally.answered), joined = Number(tally.joined);
  const text = document.getElementById("tally-text");
  if (text) text.textContent = fill(text.dataset.template, { answered, joined });
  const bar = document.getElementById("tally-bar");
  if (bar) { bar.max = Math.max(joined, 1); bar.value = answered; }
  const count = document.getElementById("joined-count");
  if (count) count.textContent = String(joined);
  if (joinedShown !== null && joined !== joinedShown && screen.dataset.roster) {
    clearTimeout(rosterTimer);  // a burst of joins: one roster request after it
    rosterTimer = setTimeout(() => htmx.ajax("GET", screen.dataset.roster, { target: "#roster", swap: "innerHTML" }), 800);
  }
  joinedShown = joined;
}

function ended(stage) {
  return /:(closed|expired)$/.test(stage || "");
}

let retryDelay = 2000;

// The stream reconnects by itself after a network error; after a refusal (a busy server's 503, a 429) it stops for
// good, so it is opened again here, a little later each time, and the view fetched for what was missed. An ended
// class's stream is ended by the server (204): nothing is left to follow.
function follow(screen) {
  screenEl = screen;
  viewEl = screen.querySelector("#teacher-view, #student-view");
  const source = new EventSource(screen.dataset.events);
  source.addEventListener("stage", (event) => refresh(event.data));
  source.addEventListener("tally", (event) => {
    const tally = JSON.parse(event.data);
    showTally(screen, tally);
    refresh(tally.stage);
  });
  source.addEventListener("open", () => { screen.classList.remove("offline"); retryDelay = 2000; });
  source.addEventListener("error", () => {
    screen.classList.add("offline");
    if (source.readyState !== EventSource.CLOSED || ended(shownStage(viewEl))) return;
    setTimeout(() => {
      htmx.ajax("GET", screen.dataset.view, { target: viewEl, swap: "innerHTML" }).finally(() => {
        if (!ended(shownStage(viewEl))) follow(screen);
      });
    }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  });
}

// ---- this browser's classes, for the start page -------------------------------------------------

function loadPast() {
  try { return JSON.parse(localStorage.getItem(PAST_CLASSES)) || []; } catch { return []; }
}

// The teacher's key leaves the address bar (a projector shows it to the room): kept in this tab's storage, and put
// back by app.js if the page is reloaded.
function hideKey(screen) {
  const url = new URL(location.href);
  const key = url.searchParams.get("key");
  if (!key) return;
  try { sessionStorage.setItem(`addnorm.class-key.${screen.dataset.code}`, key); } catch { return; }
  url.searchParams.delete("key");
  history.replaceState(history.state, "", url);
}

function rememberClass(screen) {
  const key = new URLSearchParams(location.search).get("key");
  if (!key) return;
  const entry = { code: screen.dataset.code, href: `/class/${screen.dataset.code}?key=${encodeURIComponent(key)}&present=1`,
                  title: screen.dataset.lessonTitle, created: Number(screen.dataset.created), expires: Number(screen.dataset.expires) };
  const past = loadPast().filter((c) => c.code !== entry.code);
  past.unshift(entry);
  try { localStorage.setItem(PAST_CLASSES, JSON.stringify(past.slice(0, PAST_KEPT))); } catch { /* private mode */ }
}

function listPast() {
  const box = document.getElementById("class-past");
  const list = document.getElementById("class-past-list");
  const template = document.getElementById("class-past-item");
  if (!box || !list || !template) return;
  const past = loadPast().filter((c) => typeof c.href === "string" && /^\/class\/[A-Z0-9]+\?/.test(c.href));
  past.forEach((c) => {
    const item = template.content.firstElementChild.cloneNode(true);
    const link = item.querySelector(".past-link");
    link.href = c.href;
    link.textContent = String(c.title || c.code);
    item.querySelector(".past-code").textContent = String(c.code);
    item.querySelector(".past-when").textContent = new Date(c.created * 1000).toLocaleString();
    item.querySelector(".past-ended").hidden = !(c.expires * 1000 < Date.now());
    list.appendChild(item);
  });
  box.hidden = past.length === 0;
}

// ---- wiring ----------------------------------------------------------------------------------------

// The teacher steps through the lesson with the arrow keys (a presenter's clicker sends them too).
document.addEventListener("keydown", (event) => {
  if (!document.querySelector(".class-teacher") || /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(event.target.tagName)) return;
  const button = document.getElementById(event.key === "ArrowRight" ? "btn-next" : event.key === "ArrowLeft" ? "btn-prev" : "");
  if (button) { event.preventDefault(); button.click(); }
});

document.addEventListener("htmx:afterSwap", (event) => {
  const view = event.detail.target;
  if (view && (view.id === "teacher-view" || view.id === "student-view")) typesetClass(view);
});

window.addEventListener("DOMContentLoaded", () => {
  const screen = document.getElementById("class-screen");
  if (screen) {
    typesetClass(screen);
    if (screen.dataset.role === "teacher") { rememberClass(screen); hideKey(screen); }
    follow(screen);
  }
  listPast();
});
