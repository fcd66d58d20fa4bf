// Browser tests of the playground: `vostok playground` serves the page on 127.0.0.1 and Debian's
// headless Chromium drives it through playwright-core.
//
//   VOSTOK_BIN=target/debug/vostok node tests/browser/playground.test.mjs
//
// Environment: VOSTOK_BIN (default <repo>/target/debug/vostok), CHROMIUM (default
// /usr/bin/chromium), ARTIFACTS (default <repo>/target/browser-artifacts: screenshots),
// PLAYGROUND_URL (test an already running page instead of starting `vostok playground`).

import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const vostokBin = process.env.VOSTOK_BIN ?? path.join(repo, "target/debug/vostok");
const chromiumBin = process.env.CHROMIUM ?? "/usr/bin/chromium";
const artifacts = process.env.ARTIFACTS ?? path.join(repo, "target/browser-artifacts");
mkdirSync(artifacts, { recursive: true });

const started = Date.now();
const log = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

/** Starts `vostok playground --port 0` and resolves with its printed address. */
function startServer() {
  const child = spawn(vostokBin, ["playground", "--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("vostok playground printed no address in 20 s")), 20000);
    child.on("error", reject);
    child.on("exit", (code) => reject(new Error(`vostok playground exited early (${code})`)));
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const m = out.match(/^(http:\/\/127\.0\.0\.1:\d+\/)\n/m);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1] });
      }
    });
  });
}

/** Polls `fn` (async, returns truthy when done) until it succeeds or `timeoutMs` passes. */
async function until(what, fn, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Opens the page and records every console error and uncaught exception on it. */
async function openPage(context, url) {
  const page = await context.newPage();
  page.errors = [];
  page.on("console", (m) => { if (m.type() === "error") page.errors.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => page.errors.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForSelector("body[data-ready='1']", { timeout: 20000 });
  return page;
}

const shot = (page, name) => page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });

/** Queue → owner, as drawn in the ownership lanes of `group`. */
const ownership = (page, group) => page.$$eval(`.group[data-group="${group}"] .qchip`, (chips) =>
  Object.fromEntries(chips.map((c) => [c.dataset.queue, c.dataset.owner])));

/** Sum of the max offsets shown in the topics panel. */
const shownMaxOffsets = (page) => page.$$eval(".topic-queue .max-offset", (els) => els.reduce((s, e) => s + Number(e.textContent), 0));
const shownCommitted = (page) => page.$$eval(".offsets td.committed", (els) => els.reduce((s, e) => s + Number(e.textContent), 0));

async function setSpeed(page, exponent) {
  await page.$eval("#speed", (el, v) => { el.value = String(v); el.dispatchEvent(new Event("input")); }, exponent);
}

async function setPlaying(page, on) {
  const playing = await page.$eval("#play", (b) => b.classList.contains("on"));
  if (playing !== on) await page.click("#play");
}

const snapshot = async (page) => JSON.parse(await page.evaluate(() => window.vostok.snapshot()));
const consumersOf = (snap, group) => snap.nodes.filter((n) => n.kind === "consumer" && n.group === group);

const { child, url } = process.env.PLAYGROUND_URL
  ? { child: null, url: process.env.PLAYGROUND_URL }
  : await startServer();
log(`vostok playground at ${url}`);
const browser = await chromium.launch({
  executablePath: chromiumBin,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1200 } });

  // 1. The page loads, with the WebAssembly core, and no console errors.
  const page = await openPage(context, url);
  assert.equal(await page.title(), "Vostok playground");
  const scenarioNames = await page.$$eval("#scenario option", (os) => os.map((o) => o.value));
  assert.ok(scenarioNames.includes("basic"), `scenarios: ${scenarioNames}`);
  await shot(page, "01-loaded");
  assert.deepEqual(page.errors, [], "console errors on load");
  log("page loaded without console errors");

  // 2. A scenario runs: messages are sent and stored and consumed, and the offsets on screen move.
  const group = (await snapshot(page)).groups[0]?.name;
  assert.ok(group, "the scenario has a consumer group");
  const maxBefore = await shownMaxOffsets(page);
  await setSpeed(page, 1);
  await setPlaying(page, true);
  await until("max offsets to advance on screen", async () => (await shownMaxOffsets(page)) > maxBefore);
  // Sending a batch through the toolbar is recorded as an action and lands in the queues.
  await setPlaying(page, false);
  const maxBeforeSend = await shownMaxOffsets(page);
  await page.fill("#send-count", "25");
  await page.click("[data-act=send]");
  assert.equal(await page.$eval("#status", (s) => s.classList.contains("error") ? s.textContent : ""), "", "send accepted");
  await setPlaying(page, true);
  await until("the batch to be stored", async () => (await shownMaxOffsets(page)) >= maxBeforeSend + 25);
  await until("committed offsets to advance on screen", async () => (await shownCommitted(page)) > 0, 30000);
  await until("the CommitLog strip to show records", async () => (await page.$$(".broker-store .rec")).length > 0);
  const clock = Number(await page.textContent("#clock"));
  assert.ok(clock > 0, "virtual time advanced");
  await shot(page, "02-running");
  log(`scenario runs: max offsets ${maxBefore} → ${await shownMaxOffsets(page)}, t = ${clock} ms`);

  // 3. Adding a consumer changes queue ownership on screen.
  await until("every queue owned", async () => Object.values(await ownership(page, group)).every((o) => o));
  const before = await ownership(page, group);
  const consumersBefore = consumersOf(await snapshot(page), group).map((n) => n.id);
  await page.selectOption("#group-pick", group);
  await page.click("[data-act=add_consumer]");
  const added = await until("the new consumer in the snapshot", async () =>
    consumersOf(await snapshot(page), group).map((n) => n.id).find((id) => !consumersBefore.includes(id)));
  await setSpeed(page, 2);
  const afterAdd = await until(`${added} to own a queue on screen`, async () => {
    const own = await ownership(page, group);
    return Object.values(own).includes(added) && own;
  }, 30000);
  assert.notDeepEqual(afterAdd, before, "ownership changed");
  assert.ok(await page.$(`.group[data-group="${group}"] .lane[data-consumer="${added}"]`), "a lane for the new consumer");
  await page.waitForTimeout(800); // let the chips finish sliding for the screenshot
  await shot(page, "03-consumer-added");
  log(`added ${added}: ownership ${JSON.stringify(before)} → ${JSON.stringify(afterAdd)}`);

  // 4. Killing a consumer (click its node, then "kill") rebalances its queues to the others.
  const victim = Object.values(afterAdd).find((o) => o && o !== added) ?? added;
  await page.click(`#cluster [data-node="${victim}"]`);
  await page.click("#menu button:has-text('kill')");
  await setSpeed(page, 3);
  const afterKill = await until(`${victim}'s queues to move to live consumers`, async () => {
    const own = await ownership(page, group);
    const owners = Object.values(own);
    return owners.length && owners.every((o) => o && o !== victim) && own;
  }, 60000);
  await setSpeed(page, 0);
  await page.waitForTimeout(800);
  await shot(page, "04-consumer-killed");
  log(`killed ${victim}: ownership → ${JSON.stringify(afterKill)}`);

  // 5. A copied link, opened in a new page, replays to the identical state.
  await setPlaying(page, false);
  await page.click("#copy-link");
  const link = await page.$eval("#copy-link", (b) => b.dataset.link);
  assert.ok(link && link.includes("#seed="), `copied link: ${link}`);
  const session = await page.evaluate(() => window.vostok.session());
  assert.ok(session.actions.length >= 3, `the session records the actions: ${JSON.stringify(session.actions)}`);
  const original = await page.evaluate(() => window.vostok.snapshot());
  const originalOwnership = await ownership(page, group);
  const replayed = await openPage(context, link);
  await replayed.waitForTimeout(300);
  const replayedSnapshot = await replayed.evaluate(() => window.vostok.snapshot());
  assert.equal(replayedSnapshot, original, "the replayed snapshot equals the original");
  assert.deepEqual(await ownership(replayed, group), originalOwnership, "the replayed page draws the same ownership");
  assert.equal(await replayed.textContent("#clock"), await page.textContent("#clock"), "same virtual time on screen");
  assert.equal(await shownMaxOffsets(replayed), await shownMaxOffsets(page), "same max offsets on screen");
  await shot(replayed, "05-replayed");
  log(`link replays to the same state (${session.actions.length} actions, ${original.length} bytes of snapshot)`);

  // 6. The pop scenario: a POP group's consumers share the queues, hold messages invisible with a
  // countdown, and what the failing consumer leaves unacknowledged comes back through the retry
  // topic. Unticking a consumer's "ack" makes its messages come back too.
  assert.ok(scenarioNames.includes("pop"), `scenarios: ${scenarioNames}`);
  assert.equal(await page.isVisible("#pop-panel"), false, "no POP panel without a POP group");
  await page.selectOption("#scenario", "pop");
  await until("the POP panel", async () => page.isVisible("#pop-panel"));
  assert.equal(await page.$$eval(".pop-group .pop-consumer", (els) => els.length), 3, "three POP consumers drawn");
  await setSpeed(page, 0.5);
  await setPlaying(page, true);
  await until("an in-flight message with a countdown", async () =>
    (await page.$$eval(".pop-msg .countdown", (els) => els.map((e) => e.textContent))).some((t) => / s$/.test(t)));
  await until("messages to come back through the retry topic", async () =>
    Number(await page.textContent(".pop-group .retry-total")) > 0 && (await page.$$(".retry-list .retry-msg")).length > 0, 60000);
  await until("a redelivered message held again", async () => (await page.$$(".pop-msg.retry")).length > 0, 60000);
  const popSnap = await snapshot(page);
  const pg = popSnap.pop_groups[0];
  assert.equal(pg.retry_topic, `%RETRY%${pg.name}+TopicTest`);
  assert.ok(pg.queues.filter((q) => q.topic === "TopicTest").every((q) => Object.keys(q.popped_by).length >= 2),
    `consumers share the queues: ${JSON.stringify(pg.queues)}`);
  assert.ok(pg.retry_messages.every((m) => m.reconsume_times >= 1));
  await setPlaying(page, false);
  await shot(page, "06-pop");
  const toggle = await page.$(".pop-consumer[data-consumer='pop-consumer-1'] input.pop-ack");
  assert.ok(toggle && (await toggle.isChecked()), "pop-consumer-1 acknowledges at first");
  await toggle.click();
  const behaviour = async () => (await snapshot(page)).nodes.find((n) => n.id === "pop-consumer-1").behaviour;
  assert.equal(await behaviour(), "fail", "the toggle turned acknowledging off");
  await setPlaying(page, true);
  await until("pop-consumer-1 to hold a message it will not ack", async () =>
    (await snapshot(page)).pop_groups[0].consumers.find((c) => c.id === "pop-consumer-1").in_flight.some((m) => !m.will_ack), 60000);
  await until("pop-consumer-1's column to show it", async () =>
    (await page.$$(".pop-consumer[data-consumer='pop-consumer-1'] .pop-msg.no-ack")).length > 0, 30000);
  await setPlaying(page, false);
  await shot(page, "07-pop-ack-off");
  const popSession = await page.evaluate(() => window.vostok.session());
  assert.ok(popSession.actions.some(([, a]) => a.action === "consumer_behaviour" && a.id === "pop-consumer-1"), "the toggle is a recorded action");
  log(`pop: ${pg.consumers.length} consumers sharing ${pg.queues.length} queues, ${pg.retry_total} came back; ack toggle works`);

  // No console errors anywhere along the way.
  assert.deepEqual(page.errors, [], "console errors on the first page");
  assert.deepEqual(replayed.errors, [], "console errors on the replayed page");
  log(`all browser tests passed; screenshots in ${artifacts}`);
} catch (e) {
  failed = true;
  console.error(e);
  for (const p of browser.contexts().flatMap((c) => c.pages())) {
    await p.screenshot({ path: path.join(artifacts, `failure-${browser.contexts()[0].pages().indexOf(p)}.png`), fullPage: true }).catch(() => {});
    if (p.errors?.length) console.error("page errors:", p.errors);
  }
} finally {
  await browser.close();
  child?.kill();
}
process.exit(failed ? 1 : 0);
