// A SimpleConsumer of rocketmq-client-nodejs 1.0.8 against Vostok's gRPC port: receives every
// message, acks all but one, pushes that one back with changeInvisibleDuration, sees it again
// with the next delivery attempt, then leaves it unacked so the broker dead-letters it (the
// group is created with retryMaxTimes 1: two attempts).
//
// usage: node simple-consumer.mjs <endpoints> <topic> <group> <count> <retried-body>
// prints one JSON line: {messages: [...], redelivered: {...}, afterDlq: n}
import pkg from 'rocketmq-client-nodejs';
const { SimpleConsumer, FilterExpression } = pkg;

const [endpoints, topic, group, countText, retried] = process.argv.slice(2);
const count = Number(countText);
const silent = { info() {}, warn() {}, error() {}, debug() {}, trace() {} };

const consumer = new SimpleConsumer({
  endpoints,
  namespace: '',
  consumerGroup: group,
  subscriptions: new Map([[topic, FilterExpression.SUB_ALL]]),
  awaitDuration: 2000,
  requestTimeout: 3000,
  logger: silent,
});
await consumer.startup();

const view = (m) => ({
  body: m.body.toString(),
  tag: m.tag ?? null,
  keys: m.keys,
  properties: Object.fromEntries(m.properties),
  attempt: m.deliveryAttempt,
  messageGroup: m.messageGroup ?? null,
});

const deadline = Date.now() + 20000;
const messages = [];
let held = null;
while (messages.length < count && Date.now() < deadline) {
  for (const m of await consumer.receive(16, 2000)) {
    messages.push(view(m));
    if (m.body.toString() === retried) {
      held = m;
    } else {
      await consumer.ack(m);
    }
  }
}
if (!held) throw new Error(`never received ${retried}: ${JSON.stringify(messages)}`);
// Back after a second instead of the two it was received with.
await consumer.changeInvisibleDuration(held, 1000);

let redelivered = null;
while (!redelivered && Date.now() < deadline) {
  for (const m of await consumer.receive(16, 2000)) {
    if (m.body.toString() === retried) redelivered = view(m);
    else await consumer.ack(m);
  }
}
if (!redelivered) throw new Error(`${retried} did not come back`);

// Not acked again: past the group's max attempts it goes to the DLQ, never to this consumer.
let afterDlq = 0;
const quietUntil = Date.now() + 5000;
while (Date.now() < quietUntil) {
  afterDlq += (await consumer.receive(16, 2000)).length;
}
console.log(JSON.stringify({ messages, redelivered, afterDlq }));
process.exit(0);
