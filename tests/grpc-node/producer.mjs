// Sends a normal, FIFO and delayed messages with RocketMQ 5's Node.js client and reports their
// ids as one JSON line on stdout.
// Usage: node producer.mjs <grpc host:port> <normal topic> <fifo topic> <delay topic>
import { Producer } from 'rocketmq-client-nodejs';

const [endpoints, normalTopic, fifoTopic, delayTopic] = process.argv.slice(2);

// The client's own logs would mix with the report: they go to stderr.
const logger = {
  info: (...a) => console.error(...a),
  warn: (...a) => console.error(...a),
  error: (...a) => console.error(...a),
  debug: () => {},
};

const producer = new Producer({
  endpoints,
  namespace: '',
  // No topics up front: with topics, Node 1.0.8 starts waiting for the Settings reply only
  // after fetching every route, and hangs for good when the reply came in before that.
  logger,
});
await producer.startup();

const normal = await producer.send({
  topic: normalTopic,
  tag: 'NodeTag',
  keys: ['nk1', 'nk2'],
  properties: new Map([['origin', 'node']]),
  body: Buffer.from('from node'),
});

// Two message groups, interleaved: each must keep its own order.
const fifo = [];
for (let i = 0; i < 6; i++) {
  const receipt = await producer.send({
    topic: fifoTopic,
    messageGroup: i % 2 === 0 ? 'node-even' : 'node-odd',
    body: Buffer.from(`fifo-${i}`),
  });
  fifo.push(receipt.messageId);
}

const due = new Date(Date.now() + 4000);
const delayed = await producer.send({
  topic: delayTopic,
  deliveryTimestamp: due,
  body: Buffer.from('node later'),
});

await producer.shutdown();
console.log(JSON.stringify({
  normal: normal.messageId,
  fifo,
  delay: delayed.messageId,
  delayDueMs: due.getTime(),
}));
process.exit(0);
