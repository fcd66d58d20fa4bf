// A session is a seed, a scenario and the user's actions, each stamped with the virtual time at
// which it was applied. Nothing else: replaying it against the deterministic core rebuilds the
// identical state, so the URL hash carries the whole session:
//
//   #seed=42&scenario=basic&actions=<base64url(JSON [[at_ms, action], ...])>&t=<virtual ms>

/** Largest virtual-time slice run in one call while replaying, to bound the event JSON size. */
const REPLAY_CHUNK_MS = 5000;

export function base64urlEncode(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function base64urlDecode(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

/** The URL hash for a session at virtual time `t`. */
export function encodeSession({ seed, scenario, actions }, t) {
  const parts = [`seed=${encodeURIComponent(String(seed))}`, `scenario=${encodeURIComponent(scenario)}`];
  if (actions.length) parts.push(`actions=${base64urlEncode(JSON.stringify(actions))}`);
  if (t !== undefined) parts.push(`t=${Math.floor(t)}`);
  return "#" + parts.join("&");
}

/**
 * Parses a URL hash; null when it carries no session. Throws with a readable message when it
 * carries a malformed one.
 */
export function decodeSession(hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  if (!params.has("seed")) return null;
  const seed = params.get("seed");
  if (!/^\d+$/.test(seed) || BigInt(seed) >= 2n ** 64n) throw new Error(`seed must be an unsigned 64-bit integer, not "${seed}"`);
  const scenario = params.get("scenario") || "basic";
  let actions = [];
  if (params.get("actions")) {
    try {
      actions = JSON.parse(base64urlDecode(params.get("actions")));
    } catch (e) {
      throw new Error(`the actions in the link are not readable: ${e.message}`);
    }
    const wellFormed = Array.isArray(actions) && actions.every((a) =>
      Array.isArray(a) && a.length === 2 && Number.isFinite(a[0]) && a[0] >= 0 && a[1] && typeof a[1].action === "string");
    if (!wellFormed) throw new Error("the actions in the link are not a list of [at_ms, action]");
    for (let i = 1; i < actions.length; i++)
      if (actions[i][0] < actions[i - 1][0]) throw new Error("the actions in the link are not in time order");
  }
  const t = params.has("t") ? Number(params.get("t")) : undefined;
  if (t !== undefined && !(Number.isFinite(t) && t >= 0)) throw new Error(`t must be a virtual time in ms, not "${params.get("t")}"`);
  return { seed, scenario, actions, t };
}

/**
 * Runs `pg` forward to virtual time `target` (no-op when already there), in bounded slices.
 * `onEvents` receives each slice's parsed events.
 */
export function runTo(pg, target, onEvents) {
  for (;;) {
    const left = target - pg.now_ms();
    if (left < 0) return;
    const events = JSON.parse(pg.run_for(Math.min(left, REPLAY_CHUNK_MS)));
    if (onEvents) onEvents(events);
    if (left <= REPLAY_CHUNK_MS) return;
  }
}

/**
 * Rebuilds a session: a fresh world from its seed and scenario, each action applied once virtual
 * time reaches its `at_ms` (every event due at or before that instant has run first), then run on
 * to `t`. Returns the world.
 */
export function replay(mod, session, t, onEvents) {
  const pg = new mod.Playground(BigInt(session.seed), session.scenario);
  for (const [at, action] of session.actions) {
    runTo(pg, at, onEvents);
    pg.apply(JSON.stringify(action));
  }
  if (t !== undefined) runTo(pg, t, onEvents);
  return pg;
}
