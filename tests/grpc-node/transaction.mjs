// Transactions with RocketMQ 5's Node.js client: one committed, one rolled back, one left open
// for the broker's check, which the checker commits. Reports the ids as one JSON line.
// Usage: node transaction.mjs <grpc host:port> <transaction topic>
import { Producer } from 'rocketmq-client-nodejs';

const [endpoints, topic] = process.argv.slice(2);
const COMMIT = 1; // apache.rocketmq.v2.TransactionResolution.COMMIT

const logger = {
  info: (...a) => console.error(...a),
  warn: (...a) => console.error(...a),
  error: (...a) => console.error(...a),
  debug: () => {},
};

let checkerSaw = null;
const producer = new Producer({
  endpoints,
  namespace: '',
  // No topics up front: with topics, Node 1.0.8 starts waiting for the Settings reply only
  // after fetching every route, and hangs for good when the reply came in before that.
  logger,
  checker: {
    async check(messageView) {
      checkerSaw = messageView.messageId;
      return COMMIT;
    },
  },
});
await producer.startup();

async function half(body) {
  const transaction = producer.beginTransaction();
  const receipt = await producer.send({ topic, body: Buffer.from(body) }, transaction);
  return { transaction, receipt };
}

const commit = await half('node commit');
await commit.transaction.commit();
const rollback = await half('node rollback');
await rollback.transaction.rollback();
// Left open: only the broker's check can decide it.
const open = await half('node checked');

const deadline = Date.now() + 15000;
while (checkerSaw === null && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 100));
}
// The checker's answer leaves as EndTransaction after it returns.
await new Promise((r) => setTimeout(r, 1000));
await producer.shutdown();
console.log(JSON.stringify({
  committed: commit.receipt.messageId,
  rolledBack: rollback.receipt.messageId,
  checked: open.receipt.messageId,
  checkerSaw,
}));
process.exit(0);
