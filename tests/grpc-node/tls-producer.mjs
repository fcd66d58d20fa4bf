// Starts RocketMQ 5's Node.js Producer over TLS (sslEnabled: grpc-js checks the certificate
// against its default roots, which GRPC_DEFAULT_SSL_ROOTS_FILE_PATH replaces) and sends one
// message.
//
// Usage: node tls-producer.mjs [--plaintext] [--lazy] ENDPOINT TOPIC [BODY]
// (--lazy: the topic is not named at construction, so the first call is the send's route query)
// Prints one JSON line: {"ok":true,"messageId":...} or {"ok":false,"error":...}; exit code 0
// either way (the test judges the report), 2 on bad usage.
import { Producer } from 'rocketmq-client-nodejs';

const args = process.argv.slice(2);
const plaintext = args.includes('--plaintext');
const lazy = args.includes('--lazy');
const [endpoint, topic, body] = args.filter((a) => !a.startsWith('--'));
if (!endpoint || !topic) {
  console.error('usage: node tls-producer.mjs ENDPOINT TOPIC [BODY]');
  process.exit(2);
}

const silent = { info() {}, warn() {}, error() {}, debug() {} };
const producer = new Producer({
  endpoints: endpoint,
  namespace: '',
  sslEnabled: !plaintext,
  // Named at construction, so startup fetches its route (and meets the certificate) at once.
  topic: lazy ? undefined : topic,
  requestTimeout: 3000,
  logger: silent,
});

async function main() {
  // Startup fetches the route over TLS and waits for the Telemetry settings reply; a failure
  // is reported, and the process must still end.
  const started = Promise.race([
    producer.startup(),
    new Promise((_, reject) => setTimeout(() => reject(new Error('startup timed out')), 10000)),
  ]);
  await started;
  let messageId = null;
  if (body !== undefined) {
    const receipt = await producer.send({ topic, tag: 'tls', body: Buffer.from(body) });
    messageId = receipt.messageId;
  }
  console.log(JSON.stringify({ ok: true, messageId }));
}

main()
  .catch((e) => console.log(JSON.stringify({ ok: false, error: String(e && e.message ? e.message : e) })))
  .finally(() => process.exit(0));
