// A PushConsumer of rocketmq-client-nodejs 1.0.8 against Vostok's gRPC port: consumes until
// <count> bodies succeeded, failing the first delivery of one body (which the broker must
// deliver again), or every delivery of it with `always` (a FIFO consumer then forwards it to
// the DLQ once its attempts run out). Exits without shutdown: shutdown waits for the long
// polls in flight.
//
// usage: node push-consumer.mjs <endpoints> <topic> <group> <count> [<failed-body> [always]]
// prints one JSON line: {consumed: [{body, attempt, messageGroup}...]} in consumption order
import pkg from 'rocketmq-client-nodejs';
const { PushConsumer, FilterExpression, ConsumeResult } = pkg;

const [endpoints, topic, group, countText, failed, mode] = process.argv.slice(2);
const count = Number(countText);
const silent = { info() {}, warn() {}, error() {}, debug() {}, trace() {} };

const consumed = [];
const succeeded = new Set();
let failedOnce = false;
let done;
const allDone = new Promise((resolve) => { done = resolve; });

const consumer = new PushConsumer({
  endpoints,
  namespace: '',
  consumerGroup: group,
  subscriptions: new Map([[topic, FilterExpression.SUB_ALL]]),
  requestTimeout: 3000,
  logger: silent,
  messageListener: {
    async consume(m) {
      const body = m.body.toString();
      consumed.push({ body, attempt: m.deliveryAttempt, messageGroup: m.messageGroup ?? null });
      if (failed && body === failed && (mode === 'always' || !failedOnce)) {
        failedOnce = true;
        return ConsumeResult.FAILURE;
      }
      succeeded.add(body);
      if (succeeded.size >= count) done();
      return ConsumeResult.SUCCESS;
    },
  },
});
await consumer.startup();
const timer = setTimeout(() => {
  console.log(JSON.stringify({ consumed, timedOut: true }));
  process.exit(1);
}, 30000);
await allDone;
clearTimeout(timer);
// Let the last acks leave.
await new Promise((r) => setTimeout(r, 500));
console.log(JSON.stringify({ consumed }));
process.exit(0);
