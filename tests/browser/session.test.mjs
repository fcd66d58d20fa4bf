// Unit tests of the page's session encoding (playground/web/session.js) under Node: the URL hash
// round-trips, malformed links are refused with a message, and replay applies each action at its
// virtual time (checked against the page's own mock world).

import assert from "node:assert/strict";
import { decodeSession, encodeSession, replay, runTo, base64urlDecode, base64urlEncode } from "../../playground/web/session.js";
import * as mock from "../../playground/web/mock.js";

const session = {
  seed: "18446744073709551615",
  scenario: "two-brokers",
  actions: [[0, { action: "add_consumer", group: "g1" }], [1500, { action: "send", count: 10, tag: "ünï/+=" }], [1500, { action: "kill_consumer", id: "consumer-1" }]],
};

const hash = encodeSession(session, 4242);
assert.match(hash, /^#seed=18446744073709551615&scenario=two-brokers&actions=[A-Za-z0-9_-]+&t=4242$/);
assert.deepEqual(decodeSession(hash), { ...session, t: 4242 });
assert.deepEqual(decodeSession(encodeSession({ ...session, actions: [] })), { ...session, actions: [], t: undefined });
assert.equal(decodeSession(""), null);
assert.equal(decodeSession("#view=x"), null);
assert.equal(base64urlDecode(base64urlEncode("a?b>c~")), "a?b>c~");

for (const bad of [
  "#seed=-1", "#seed=18446744073709551616", "#seed=abc",
  "#seed=1&actions=!!!", `#seed=1&actions=${base64urlEncode("{}")}`,
  `#seed=1&actions=${base64urlEncode('[[5,{"action":"a"}],[4,{"action":"b"}]]')}`,
  `#seed=1&actions=${base64urlEncode('[[-1,{"action":"a"}]]')}`, "#seed=1&t=-5", "#seed=1&t=x",
]) assert.throws(() => decodeSession(bad), Error, bad);

// Replaying applies each action once virtual time reaches it, then runs on to t.
const applied = [];
const world = replay(
  { Playground: class extends mock.Playground { apply(json) { applied.push([this.now_ms(), JSON.parse(json).action]); super.apply(json); } } },
  { seed: "7", scenario: "basic", actions: session.actions }, 12345);
assert.deepEqual(applied.slice(-3), [[0, "add_consumer"], [1500, "send"], [1500, "kill_consumer"]]);
assert.equal(world.now_ms(), 12345);
const again = replay(mock, { seed: "7", scenario: "basic", actions: session.actions }, 12345);
assert.equal(again.snapshot(), world.snapshot(), "the same session replays to the same state");
runTo(world, 100); // already past: no-op
assert.equal(world.now_ms(), 12345);
console.log("session tests passed");
