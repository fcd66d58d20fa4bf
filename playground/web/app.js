// The playground page: owns the world (the core compiled to WebAssembly), the clock loop, the
// user's actions and the session in the URL. Rendering lives in view.js, sessions in session.js.

import { ClusterView, GroupsView, renderPopGroups, renderTopics, renderStorage, describe, esc } from "./view.js";
import { decodeSession, encodeSession, replay, runTo } from "./session.js";

const $ = (sel) => document.querySelector(sel);

/** Heavy panels redraw at most this often while playing (real ms). */
const RENDER_INTERVAL_MS = 80;
/** Lines kept in the event log. */
const LOG_LINES = 250;
/** Kinds hidden by "hide network & flush". */
const NOISY = new Set(["message", "flushed"]);
/** A single frame never advances virtual time by more than this (keeps the page responsive). */
const MAX_FRAME_VIRTUAL_MS = 20000;

const state = {
  mod: null,
  pg: null,
  session: { seed: "42", scenario: "basic", actions: [] },
  playing: false,
  speed: 1,
  carry: 0, // fractional virtual ms not yet run
  snap: null,
  dirty: true,
  lastRender: 0,
  lastFrame: 0,
  eventCount: 0,
  ownHash: "",
};

let cluster, groups;

async function loadModule() {
  if (new URLSearchParams(location.search).has("mock")) return import("./mock.js");
  const mod = await import("./pkg/vostok_playground.js");
  await mod.default();
  return mod;
}

function status(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", isError);
  clearTimeout(status.timer);
  if (text) status.timer = setTimeout(() => (el.textContent = ""), isError ? 8000 : 3000);
}

// --- the world -------------------------------------------------------------------------------

function takeEvents(json) {
  const events = typeof json === "string" ? JSON.parse(json) : json;
  if (!events.length) return;
  state.eventCount += events.length;
  logEvents(events);
  state.dirty = true;
}

function load(session, t) {
  if (state.pg) state.pg.free();
  state.pg = null;
  state.session = { seed: session.seed, scenario: session.scenario, actions: [...session.actions] };
  $("#seed").value = session.seed;
  $("#scenario").value = session.scenario;
  $("#log").replaceChildren();
  // Replaying may produce many events: only the tail reaches the log.
  let tail = [];
  state.pg = replay(state.mod, state.session, t ?? lastActionTime(), (events) => {
    tail = tail.concat(events).slice(-LOG_LINES);
  });
  state.carry = 0;
  takeEvents(tail);
  state.dirty = true;
  renderAll();
  writeHash();
}

function lastActionTime() {
  const a = state.session.actions;
  return a.length ? a[a.length - 1][0] : 0;
}

function reset() {
  const seed = $("#seed").value.trim();
  if (!/^\d+$/.test(seed) || BigInt(seed) >= 2n ** 64n) {
    status("the seed must be an unsigned 64-bit integer", true);
    return;
  }
  pause();
  load({ seed, scenario: $("#scenario").value, actions: [] }, 0);
}

/**
 * Applies a user action at the current virtual time and records it. Every event due at this
 * instant runs first, so a replay that runs to `at_ms` and then applies reaches the same state.
 */
function act(action) {
  const pg = state.pg;
  try {
    takeEvents(pg.run_for(0));
    pg.apply(JSON.stringify(action));
  } catch (e) {
    status(`${action.action}: ${e.message ?? e}`, true);
    return false;
  }
  state.session.actions.push([pg.now_ms(), action]);
  writeHash();
  state.dirty = true;
  renderAll();
  return true;
}

function writeHash() {
  state.ownHash = encodeSession(state.session);
  history.replaceState(null, "", state.ownHash);
}

function link() {
  takeEvents(state.pg.run_for(0));
  return location.href.split("#")[0] + encodeSession(state.session, state.pg.now_ms());
}

// --- time ------------------------------------------------------------------------------------

function play() {
  state.playing = true;
  $("#play").textContent = "❚❚ pause";
  $("#play").classList.add("on");
}

function pause() {
  state.playing = false;
  state.carry = 0;
  $("#play").textContent = "▶ play";
  $("#play").classList.remove("on");
}

function step() {
  pause();
  const events = JSON.parse(state.pg.step());
  takeEvents(events);
  if (!events.length) status("nothing left to run");
  state.dirty = true;
  renderAll();
}

/** Runs until the core reports a rebalance decision, or gives up after five virtual minutes. */
function nextRebalance() {
  pause();
  const pg = state.pg;
  const limit = pg.now_ms() + 300000;
  while (pg.now_ms() < limit) {
    const events = JSON.parse(pg.run_for(100));
    takeEvents(events);
    if (events.some((e) => e.kind === "rebalanced")) {
      status(`rebalanced at t = ${pg.now_ms()} ms`);
      break;
    }
  }
  if (pg.now_ms() >= limit) status("no rebalance within five virtual minutes");
  state.dirty = true;
  renderAll();
}

function setSpeed(exp) {
  state.speed = 10 ** exp;
  const s = state.speed;
  $("#speed-label").textContent = `×${s >= 10 ? Math.round(s) : s >= 1 ? s.toFixed(1) : s.toPrecision(2)}`;
}

function frame(ts) {
  const dt = state.lastFrame ? Math.min(ts - state.lastFrame, 100) : 0;
  state.lastFrame = ts;
  if (state.playing && state.pg) {
    state.carry = Math.min(state.carry + dt * state.speed, MAX_FRAME_VIRTUAL_MS);
    const whole = Math.floor(state.carry);
    if (whole > 0) {
      state.carry -= whole;
      takeEvents(state.pg.run_for(whole));
      state.dirty = true;
    }
  }
  if (state.dirty && ts - state.lastRender >= RENDER_INTERVAL_MS) renderAll(ts);
  if (state.snap) cluster.renderDots(state.snap.in_flight, state.pg.now_ms() + state.carry);
  requestAnimationFrame(frame);
}

// --- rendering -------------------------------------------------------------------------------

function renderAll(ts = performance.now()) {
  if (!state.pg) return;
  state.lastRender = ts;
  state.dirty = false;
  const snap = JSON.parse(state.pg.snapshot());
  state.snap = snap;
  $("#clock").textContent = snap.now_ms;
  cluster.render(snap);
  groups.render(snap);
  const popGroups = snap.pop_groups ?? [];
  $("#pop-panel").hidden = popGroups.length === 0;
  // Not while a control in it has the focus: redrawing would take it away mid-click.
  if (popGroups.length && !$("#pop-groups").contains(document.activeElement)) renderPopGroups($("#pop-groups"), snap);
  renderTopics($("#topics"), snap);
  const storeKey = JSON.stringify(snap.brokers.map((b) => [b.id, b.written_offset, b.flushed_offset, b.consume_queues.map((c) => c.entries.length)]));
  if (storeKey !== renderAll.storeKey) {
    renderAll.storeKey = storeKey;
    renderStorage($("#storage"), snap);
  }
  const groupSelect = $("#group-pick");
  const names = snap.groups.map((g) => g.name);
  if (names.join() !== [...groupSelect.options].map((o) => o.value).join()) {
    const current = groupSelect.value;
    groupSelect.innerHTML = names.map((n) => `<option>${esc(n)}</option>`).join("");
    if (names.includes(current)) groupSelect.value = current;
  }
  document.body.dataset.now = snap.now_ms;
}

function logEvents(events) {
  const quiet = $("#log-quiet").checked;
  const shown = (quiet ? events.filter((e) => !NOISY.has(e.kind)) : events).slice(-LOG_LINES);
  if (!shown.length) return;
  const list = $("#log");
  const frag = document.createDocumentFragment();
  for (let i = shown.length - 1; i >= 0; i--) {
    const e = shown[i];
    const li = document.createElement("li");
    li.className = `ev ev-${e.kind}`;
    li.innerHTML = `<time>${e.t_ms}</time> <b>${esc(e.kind)}</b> ${esc(describe(e))}`;
    frag.append(li);
  }
  list.prepend(frag);
  while (list.childElementCount > LOG_LINES) list.lastElementChild.remove();
}

// --- node menu -------------------------------------------------------------------------------

function nodeActions(node) {
  const id = node.id;
  const acts = [];
  if (node.kind === "broker") {
    acts.push(node.up ? ["kill broker", { action: "kill_broker", id }] : ["restart broker", { action: "restart_broker", id }]);
  }
  const consumer = node.kind === "consumer" || node.kind === "pop_consumer";
  if (consumer && node.up) {
    acts.push(["stop (clean shutdown)", { action: "stop_consumer", id }]);
    acts.push(["kill (crash)", { action: "kill_consumer", id }]);
    for (const b of ["ok", "fail", "slow"]) {
      const label = node.kind === "pop_consumer" ? { ok: "ack", fail: "never ack (messages come back)", slow: "ack slowly" }[b] : `consume: ${b}`;
      if ((node.behaviour ?? "ok") !== b) acts.push([label, { action: "consumer_behaviour", id, behaviour: b }]);
    }
    if (node.kind === "pop_consumer") acts.push(["fail the next 3 messages", { action: "pop_fail_next", id, count: 3 }]);
  }
  if (node.kind === "producer") acts.push(["remove producer", { action: "remove_producer", id }]);
  if (node.up || !consumer) {
    acts.push(node.partitioned ? ["heal network", { action: "heal", id }] : ["partition from network", { action: "partition", id }]);
  }
  return acts;
}

function openMenu(id, event) {
  const node = state.snap?.nodes.find((n) => n.id === id);
  if (!node) return;
  const menu = $("#menu");
  const acts = nodeActions(node);
  menu.innerHTML = `<div class="menu-title">${esc(id)} <small>${esc(node.kind)}${node.up ? "" : " · down"}${node.partitioned ? " · partitioned" : ""}</small></div>` +
    (acts.length ? acts.map(([label], i) => `<button data-i="${i}">${esc(label)}</button>`).join("") : `<div class="menu-empty">no actions</div>`);
  menu.onclick = (e) => {
    const b = e.target.closest("button[data-i]");
    if (!b) return;
    closeMenu();
    act(acts[Number(b.dataset.i)][1]);
  };
  menu.hidden = false;
  const x = Math.min(event.clientX, innerWidth - menu.offsetWidth - 8);
  const y = Math.min(event.clientY, innerHeight - menu.offsetHeight - 8);
  menu.style.left = `${x + scrollX}px`;
  menu.style.top = `${y + scrollY}px`;
  event.stopPropagation();
}

function closeMenu() {
  $("#menu").hidden = true;
}

// --- CommitLog records on hover / click ------------------------------------------------------

const recordCache = new Map();

function record(broker, offset) {
  const key = `${broker}@${offset}`;
  if (!recordCache.has(key)) {
    try {
      const recs = JSON.parse(state.pg.commitlog(broker, offset, 1));
      recordCache.set(key, recs[0] ?? null);
    } catch (e) {
      return { error: String(e.message ?? e) };
    }
  }
  return recordCache.get(key);
}

function recordText(broker, offset) {
  const r = record(broker, offset);
  return `${broker} CommitLog @${offset}\n` + (r ? JSON.stringify(r, null, 1) : "(no record: the broker may be down or the log truncated)");
}

function wireStorage() {
  const tip = $("#tip");
  const storage = $("#storage");
  storage.addEventListener("mousemove", (e) => {
    const el = e.target.closest("[data-off]");
    if (!el) { tip.hidden = true; return; }
    tip.textContent = recordText(el.dataset.broker, Number(el.dataset.off));
    tip.hidden = false;
    tip.style.left = `${Math.min(e.pageX + 14, scrollX + innerWidth - tip.offsetWidth - 10)}px`;
    tip.style.top = `${e.pageY + 14}px`;
  });
  storage.addEventListener("mouseleave", () => (tip.hidden = true));
  storage.addEventListener("click", (e) => {
    const el = e.target.closest("[data-off]");
    if (!el) return;
    const pre = $("#record");
    pre.textContent = recordText(el.dataset.broker, Number(el.dataset.off));
    pre.hidden = false;
  });
}

// --- start -----------------------------------------------------------------------------------

function wire() {
  cluster = new ClusterView($("#cluster"), openMenu);
  groups = new GroupsView($("#groups"), (group, strategy) => act({ action: "set_strategy", group, strategy }));
  $("#play").addEventListener("click", () => (state.playing ? pause() : play()));
  $("#step").addEventListener("click", step);
  $("#next-rebalance").addEventListener("click", nextRebalance);
  $("#help-button").addEventListener("click", (e) => { e.stopPropagation(); $("#help").hidden = !$("#help").hidden; });
  $("#reset").addEventListener("click", reset);
  $("#scenario").addEventListener("change", reset);
  $("#seed").addEventListener("change", reset);
  $("#speed").addEventListener("input", (e) => setSpeed(Number(e.target.value)));
  setSpeed(Number($("#speed").value));
  $("#copy-link").addEventListener("click", async () => {
    const url = link();
    $("#copy-link").dataset.link = url;
    try {
      await navigator.clipboard.writeText(url);
      status("link copied: it replays this session to t = " + state.pg.now_ms() + " ms");
    } catch {
      prompt("Copy this link:", url);
    }
  });
  for (const b of document.querySelectorAll("[data-act]")) {
    b.addEventListener("click", () => {
      const kind = b.dataset.act;
      if (kind === "add_consumer") act({ action: "add_consumer", group: $("#group-pick").value || "g1" });
      else if (kind === "add_pop_consumer") act({ action: "add_pop_consumer", group: state.snap?.pop_groups?.[0]?.name ?? "pg1" });
      else if (kind === "send") {
        const count = Math.max(1, Math.min(1000, Math.floor(Number($("#send-count").value) || 1)));
        act({ action: "send", count, tag: $("#send-tag").value });
      } else act({ action: kind });
    });
  }
  document.addEventListener("click", (e) => {
    if (!e.target.closest("#menu")) closeMenu();
    if (!e.target.closest("#help")) $("#help").hidden = true;
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea")) return;
    if (e.key === " ") { e.preventDefault(); state.playing ? pause() : play(); }
    else if (e.key === ".") step();
    else if (e.key === "n") nextRebalance();
    else if (e.key === "?") $("#help").hidden = !$("#help").hidden;
    else if (e.key === "Escape") { closeMenu(); $("#help").hidden = true; }
  });
  $("#log-quiet").addEventListener("change", () => $("#log").replaceChildren());
  window.addEventListener("hashchange", () => {
    if (location.hash === state.ownHash) return;
    openFromHash();
  });
  wireStorage();
  // The POP panel's controls: the ack toggle and "fail next 3".
  $("#pop-groups").addEventListener("change", (e) => {
    const box = e.target.closest("input.pop-ack");
    if (box) act({ action: "consumer_behaviour", id: box.dataset.id, behaviour: box.checked ? "ok" : "fail" });
    box?.blur();
  });
  $("#pop-groups").addEventListener("click", (e) => {
    const b = e.target.closest("button.pop-fail");
    if (b) act({ action: "pop_fail_next", id: b.dataset.id, count: 3 });
    b?.blur();
  });
}

function openFromHash() {
  let session = null;
  try {
    session = decodeSession(location.hash);
  } catch (e) {
    status(e.message, true);
  }
  pause();
  if (session) {
    try {
      load(session, session.t);
      status(`replayed seed ${session.seed}, ${session.actions.length} actions, to t = ${state.pg.now_ms()} ms`);
      return;
    } catch (e) {
      status(`this link does not replay: ${e.message ?? e}`, true);
    }
  }
  load({ seed: $("#seed").value || "42", scenario: $("#scenario").value || "basic", actions: [] }, 0);
}

async function main() {
  wire();
  try {
    state.mod = await loadModule();
  } catch (e) {
    status(`cannot load the WebAssembly module: ${e.message ?? e}`, true);
    throw e;
  }
  const names = JSON.parse(state.mod.scenarios());
  $("#scenario").innerHTML = names.map((n) => `<option>${esc(n)}</option>`).join("");
  openFromHash();
  // Hooks for tests and the curious: the raw snapshot and the session.
  window.vostok = {
    snapshot: () => state.pg.snapshot(),
    now: () => state.pg.now_ms(),
    session: () => JSON.parse(JSON.stringify(state.session)),
    link,
    events: () => state.eventCount,
  };
  document.body.dataset.ready = "1";
  requestAnimationFrame(frame);
}

main();
