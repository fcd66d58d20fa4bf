// A stand-in for the wasm-bindgen `Playground` with the same API and JSON shapes, used only when
// the page is opened with `?mock` (developing the page without the WebAssembly build). It is a
// toy: it imitates the shape of the events, not RocketMQ's behaviour.

const TOPIC = "TopicTest";
const QUEUES_PER_BROKER = 4;
const SIZE = 180;

class Rng {
  constructor(seed) { this.s = BigInt.asUintN(64, BigInt(seed) ^ 0x9e3779b97f4a7c15n); }
  next() {
    this.s = BigInt.asUintN(64, this.s * 6364136223846793005n + 1442695040888963407n);
    return Number(this.s >> 33n) / 2 ** 31;
  }
}

export default async function init() {}

export function scenarios() {
  return JSON.stringify(["basic", "rebalance", "retry-dlq", "two-brokers"]);
}

export class Playground {
  constructor(seed, scenario) {
    if (!JSON.parse(scenarios()).includes(scenario)) throw new Error(`unknown scenario ${scenario}`);
    this.seed = BigInt(seed);
    this.scenario = scenario;
    this.rng = new Rng(this.seed);
    this.now = 0;
    this.seq = 0;
    this.tasks = [];
    this.nodes = new Map();
    this.brokers = new Map();
    this.groups = new Map();
    this.inFlight = [];
    this.msgSeq = 0;
    this.counter = { producer: 0, consumer: 0 };
    this.addNode({ id: "namesrv", kind: "namesrv" });
    const brokerIds = scenario === "two-brokers" ? ["broker-a", "broker-b"] : ["broker-a"];
    for (const id of brokerIds) {
      this.addNode({ id, kind: "broker" });
      const cqs = [];
      for (let q = 0; q < QUEUES_PER_BROKER; q++) cqs.push({ topic: TOPIC, queue_id: q, entries: [] });
      this.brokers.set(id, { id, written: 0, flushed: 0, cqs, log: [] });
      this.every(200, () => this.flush(id));
    }
    this.groups.set("g1", { name: "g1", strategy: "averagely", consumers: [], owner: new Map(), committed: new Map(), retry: 0, dlq: 0 });
    this.apply(JSON.stringify({ action: "add_producer" }));
    this.apply(JSON.stringify({ action: "add_consumer", group: "g1" }));
    if (scenario === "rebalance") this.apply(JSON.stringify({ action: "add_consumer", group: "g1" }));
    if (scenario === "retry-dlq") this.behaviourOf("consumer-1", "fail");
    this.every(100, () => this.autoSend());
    this.every(50, () => this.pullAll());
    this.every(1000, () => this.commitAll());
    this.rebalanceSoon();
  }

  addNode(n) { this.nodes.set(n.id, { up: true, partitioned: false, ...n }); }
  behaviourOf(id, b) { const n = this.nodes.get(id); if (n) n.behaviour = b; }
  at(t, fn) { this.tasks.push({ t, seq: this.seq++, fn }); }
  every(ms, fn) { const tick = () => { fn(); this.at(this.now + ms, tick); }; this.at(this.now + ms, tick); }
  emit(kind, body) { this.out.push({ t_ms: this.now, kind, ...body }); }
  queues() {
    const qs = [];
    for (const b of this.brokers.values()) for (const cq of b.cqs) qs.push({ broker: b.id, topic: TOPIC, queue_id: cq.queue_id });
    return qs;
  }
  key(q) { return `${q.broker}/${q.topic}/${q.queue_id}`; }
  alive(id) { const n = this.nodes.get(id); return n && n.up && !n.partitioned; }
  send(from, to, code, bytes, then) {
    const deliver = this.now + 1 + Math.floor(this.rng.next() * 3);
    const m = { from, to, code, sent_ms: this.now, deliver_ms: deliver };
    this.inFlight.push(m);
    this.emit("message", { from, to, code, bytes, deliver_ms: deliver });
    this.at(deliver, () => {
      this.inFlight.splice(this.inFlight.indexOf(m), 1);
      if (this.alive(from) && this.alive(to)) then();
    });
  }

  autoSend() {
    for (const n of this.nodes.values()) if (n.kind === "producer" && this.alive(n.id)) this.produce(n.id, "auto");
  }
  produce(producer, tag) {
    const qs = this.queues().filter((q) => this.alive(q.broker));
    if (!qs.length) return;
    const q = qs[Math.floor(this.rng.next() * qs.length)];
    this.send(producer, q.broker, 10, SIZE, () => {
      const b = this.brokers.get(q.broker);
      const cq = b.cqs[q.queue_id];
      const rec = { queue_offset: cq.entries.length, commitlog_offset: b.written, size: SIZE };
      cq.entries.push(rec);
      const msg_id = `MSG${(this.msgSeq++).toString(16).padStart(8, "0")}`;
      b.log.push({ ...rec, topic: TOPIC, queue_id: q.queue_id, msg_id, tag, born_ms: this.now });
      b.written += SIZE;
      this.emit("stored", { broker: b.id, commitlog_offset: rec.commitlog_offset, size: SIZE, topic: TOPIC, queue_id: q.queue_id, queue_offset: rec.queue_offset });
      this.emit("sent", { producer, broker: b.id, topic: TOPIC, queue_id: q.queue_id, queue_offset: rec.queue_offset, msg_id });
    });
  }
  flush(id) {
    const b = this.brokers.get(id);
    if (!this.nodes.get(id).up || b.flushed === b.written) return;
    b.flushed = b.written;
    this.emit("flushed", { broker: id, flushed_offset: b.flushed });
  }
  pullAll() {
    for (const g of this.groups.values()) {
      for (const [k, owner] of g.owner) {
        if (!owner || !this.alive(owner)) continue;
        const [broker, topic, qid] = k.split("/");
        const b = this.brokers.get(broker);
        const cq = b.cqs[Number(qid)];
        const from = g.committed.get(k) ?? 0;
        const count = Math.min(4, cq.entries.length - from);
        if (count <= 0 || !this.alive(broker)) continue;
        const node = this.nodes.get(owner);
        this.send(owner, broker, 11, 64, () => {
          this.emit("pulled", { consumer: owner, broker, topic, queue_id: Number(qid), count });
          const delay = node.behaviour === "slow" ? 300 : 1;
          this.at(this.now + delay, () => {
            for (let i = 0; i < count; i++) {
              const off = from + i;
              const rec = b.log.find((r) => r.queue_id === Number(qid) && r.queue_offset === off);
              const fail = node.behaviour === "fail";
              this.emit("consumed", { consumer: owner, topic, queue_id: Number(qid), queue_offset: off, msg_id: rec.msg_id, status: fail ? "RECONSUME_LATER" : "CONSUME_SUCCESS" });
              if (fail) {
                rec.times = (rec.times ?? 0) + 1;
                if (rec.times > 3) { g.dlq++; this.emit("dlq", { group: g.name, msg_id: rec.msg_id }); }
                else { g.retry++; this.emit("retry", { group: g.name, msg_id: rec.msg_id, reconsume_times: rec.times }); }
              }
            }
            g.committed.set(k, from + count);
          });
        });
      }
    }
  }
  commitAll() {
    for (const g of this.groups.values())
      for (const [k, off] of g.committed) {
        const [broker, topic, qid] = k.split("/");
        if (this.alive(broker)) this.emit("committed", { group: g.name, broker, topic, queue_id: Number(qid), offset: off });
      }
  }
  rebalanceSoon() { this.at(this.now + 20, () => this.rebalance()); }
  rebalance() {
    for (const g of this.groups.values()) {
      const cs = g.consumers.filter((c) => this.nodes.get(c)?.up).sort();
      const qs = this.queues();
      const before = new Map(g.owner);
      g.owner = new Map(qs.map((q) => [this.key(q), null]));
      qs.forEach((q, i) => {
        if (!cs.length) return;
        let idx;
        if (g.strategy === "circle") idx = i % cs.length;
        else if (g.strategy === "consistent_hash") idx = (q.queue_id * 7 + q.broker.length) % cs.length;
        else idx = Math.min(cs.length - 1, Math.floor((i * cs.length) / qs.length));
        g.owner.set(this.key(q), cs[idx]);
      });
      const changed = [...g.owner].some(([k, o]) => before.get(k) !== o);
      if (changed)
        for (const c of cs)
          this.emit("rebalanced", { group: g.name, consumer: c, queues: qs.filter((q) => g.owner.get(this.key(q)) === c) });
    }
  }

  apply(actionJson) {
    const a = JSON.parse(actionJson);
    const node = (id) => { const n = this.nodes.get(id); if (!n) throw new Error(`no node ${id}`); return n; };
    this.out = this.out ?? [];
    switch (a.action) {
      case "add_producer": this.addNode({ id: `producer-${++this.counter.producer}`, kind: "producer" }); break;
      case "remove_producer": node(a.id); this.nodes.delete(a.id); break;
      case "add_consumer": {
        const g = this.groups.get(a.group);
        if (!g) throw new Error(`no group ${a.group}`);
        const id = `consumer-${++this.counter.consumer}`;
        this.addNode({ id, kind: "consumer", group: a.group, behaviour: "ok" });
        g.consumers.push(id);
        this.rebalanceSoon();
        break;
      }
      case "stop_consumer": case "kill_consumer": {
        const n = node(a.id);
        n.up = false;
        this.emit("node_down", { id: a.id });
        const g = this.groups.get(n.group);
        g.consumers = g.consumers.filter((c) => c !== a.id);
        this.at(this.now + (a.action === "kill_consumer" ? 2000 : 20), () => this.rebalance());
        break;
      }
      case "kill_broker": node(a.id).up = false; this.emit("node_down", { id: a.id }); break;
      case "restart_broker": node(a.id).up = true; this.emit("node_up", { id: a.id }); break;
      case "partition": node(a.id).partitioned = true; this.emit("partitioned", { id: a.id }); break;
      case "heal": node(a.id).partitioned = false; this.emit("healed", { id: a.id }); break;
      case "send": {
        const p = [...this.nodes.values()].find((n) => n.kind === "producer");
        if (!p) throw new Error("no producer");
        for (let i = 0; i < (a.count ?? 1); i++) this.produce(p.id, a.tag ?? "");
        break;
      }
      case "consumer_behaviour": node(a.id).behaviour = a.behaviour; break;
      case "set_strategy": {
        const g = this.groups.get(a.group);
        if (!g) throw new Error(`no group ${a.group}`);
        g.strategy = a.strategy;
        this.rebalanceSoon();
        break;
      }
      default: throw new Error(`unknown action ${a.action}`);
    }
  }

  runTask() {
    this.tasks.sort((x, y) => x.t - y.t || x.seq - y.seq);
    const task = this.tasks.shift();
    this.now = Math.max(this.now, task.t);
    task.fn();
  }
  take() { const out = this.out ?? []; this.out = []; return JSON.stringify(out); }
  step() { this.out = this.out ?? []; if (this.tasks.length) this.runTask(); return this.take(); }
  run_for(ms) {
    this.out = this.out ?? [];
    const end = this.now + ms;
    for (;;) {
      this.tasks.sort((x, y) => x.t - y.t || x.seq - y.seq);
      if (!this.tasks.length || this.tasks[0].t > end) break;
      this.runTask();
    }
    this.now = end;
    return this.take();
  }
  now_ms() { return this.now; }
  snapshot() {
    const groups = [...this.groups.values()].map((g) => ({
      name: g.name, strategy: g.strategy, consumers: [...g.consumers],
      queues: this.queues().map((q) => {
        const k = this.key(q);
        const max = this.brokers.get(q.broker).cqs[q.queue_id].entries.length;
        const committed = g.committed.get(k) ?? 0;
        return { ...q, owner: g.owner.get(k) ?? null, committed_offset: committed, max_offset: max, lag: max - committed };
      }),
      retry_messages: g.retry, dlq_messages: g.dlq,
    }));
    return JSON.stringify({
      now_ms: this.now, seed: Number(this.seed), scenario: this.scenario,
      nodes: [...this.nodes.values()].map((n) => ({ ...n })),
      topics: [{ name: TOPIC, queues: this.queues().map((q) => ({ broker: q.broker, queue_id: q.queue_id, min_offset: 0, max_offset: this.brokers.get(q.broker).cqs[q.queue_id].entries.length })) }],
      groups,
      brokers: [...this.brokers.values()].map((b) => ({ id: b.id, written_offset: b.written, flushed_offset: b.flushed, consume_queues: b.cqs.map((cq) => ({ topic: cq.topic, queue_id: cq.queue_id, entries: cq.entries.map((e) => ({ ...e })) })) })),
      in_flight: this.inFlight.map((m) => ({ ...m })),
    });
  }
  commitlog(broker, fromOffset, maxRecords) {
    const b = this.brokers.get(broker);
    if (!b) throw new Error(`no broker ${broker}`);
    return JSON.stringify(b.log.filter((r) => r.commitlog_offset >= fromOffset).slice(0, maxRecords));
  }
  free() {}
}
