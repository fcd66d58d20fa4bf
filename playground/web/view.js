// Rendering: plain DOM and SVG built from the core's snapshot and events. Nothing here decides
// protocol behaviour; it only draws what the core reports.

const SVG_NS = "http://www.w3.org/2000/svg";

export function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function hash(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** A stable colour per queue, shared by the ownership chips and the CommitLog blocks. */
export function queueColour(broker, topic, queueId) {
  const hue = (hash(`${broker}/${topic}`) % 360 + queueId * 47) % 360;
  return `hsl(${hue} 62% 56%)`;
}

export const queueKey = (q) => `${q.broker}/${q.topic}/${q.queue_id}`;

// ---------------------------------------------------------------------------------------------
// Cluster: nodes in columns (producers · brokers · consumers, name server on top), messages as
// dots moving along the line between sender and receiver by the share of flight time elapsed.

const KIND_COLUMN = { producer: 80, broker: 300, consumer: 520 };

export class ClusterView {
  constructor(svg, onNodeClick) {
    this.svg = svg;
    this.positions = new Map();
    this.layoutKey = "";
    svg.innerHTML = `<g class="links"></g><g class="nodes"></g><g class="dots"></g>`;
    this.links = svg.querySelector(".links");
    this.nodes = svg.querySelector(".nodes");
    this.dots = svg.querySelector(".dots");
    svg.addEventListener("click", (e) => {
      const g = e.target.closest("[data-node]");
      if (g) onNodeClick(g.dataset.node, e);
    });
  }

  render(snap) {
    const key = JSON.stringify(snap.nodes);
    if (key === this.layoutKey) return;
    this.layoutKey = key;
    const byKind = { namesrv: [], producer: [], broker: [], consumer: [] };
    // POP consumers share the consumers' column.
    for (const n of snap.nodes) (byKind[n.kind === "pop_consumer" ? "consumer" : n.kind] ?? byKind.broker).push(n);
    this.positions.clear();
    byKind.namesrv.forEach((n, i) => this.positions.set(n.id, { x: 300 + (i - (byKind.namesrv.length - 1) / 2) * 120, y: 42 }));
    for (const kind of ["producer", "broker", "consumer"]) {
      const list = byKind[kind];
      const top = 125, bottom = 335;
      list.forEach((n, i) => {
        const y = list.length === 1 ? (top + bottom) / 2 : top + ((bottom - top) * i) / (list.length - 1);
        this.positions.set(n.id, { x: KIND_COLUMN[kind], y });
      });
    }
    const pos = (id) => this.positions.get(id);
    let links = "";
    for (const b of byKind.broker) {
      const pb = pos(b.id);
      for (const ns of byKind.namesrv) links += line(pb, pos(ns.id));
      for (const n of [...byKind.producer, ...byKind.consumer]) links += line(pb, pos(n.id));
    }
    for (const ns of byKind.namesrv) for (const n of [...byKind.producer, ...byKind.consumer]) links += line(pos(n.id), pos(ns.id), "route");
    this.links.innerHTML = links;
    let nodes = "";
    for (const kind of ["producer", "broker", "consumer"]) {
      const list = byKind[kind];
      if (list.length) nodes += `<text class="col-label" x="${KIND_COLUMN[kind]}" y="92">${kind}s</text>`;
    }
    for (const n of snap.nodes) {
      const p = pos(n.id);
      const cls = ["node", n.kind === "pop_consumer" ? "consumer pop" : n.kind, n.up ? "up" : "down", n.partitioned ? "partitioned" : "", n.behaviour && n.behaviour !== "ok" ? `b-${n.behaviour}` : ""].join(" ");
      const shape = n.kind === "broker"
        ? `<rect x="-44" y="-20" width="88" height="40" rx="6"/>`
        : n.kind === "namesrv" ? `<rect x="-50" y="-16" width="100" height="32" rx="16"/>` : `<rect x="-42" y="-17" width="84" height="34" rx="17"/>`;
      const badge = n.behaviour && n.behaviour !== "ok" ? `<text class="badge" y="36">${esc(n.behaviour)}</text>` : "";
      const group = n.group ? `<text class="sub" y="${n.behaviour && n.behaviour !== "ok" ? 48 : 36}">${esc(n.group)}</text>` : "";
      const cross = n.up ? "" : `<path class="cross" d="M-14,-14L14,14M14,-14L-14,14"/>`;
      nodes += `<g class="${cls}" data-node="${esc(n.id)}" transform="translate(${p.x},${p.y})" tabindex="0" role="button" aria-label="${esc(n.id)}">
        ${shape}<text class="label" y="4">${esc(shortId(n.id))}</text>${badge}${group}${cross}
        <title>${esc(n.id)} (${n.kind}${n.up ? "" : ", down"}${n.partitioned ? ", partitioned" : ""})${n.state ? `: ${esc(n.state)}` : ""}${n.addr ? ` at ${esc(n.addr)}` : ""} — click for actions</title></g>`;
    }
    this.nodes.innerHTML = nodes;
  }

  /** Moves the in-flight messages; `now` may be fractional (between two core steps). */
  renderDots(inFlight, now) {
    let out = "";
    for (const m of inFlight) {
      const a = this.positions.get(m.from), b = this.positions.get(m.to);
      if (!a || !b) continue;
      const span = Math.max(1, m.deliver_ms - m.sent_ms);
      const f = Math.min(1, Math.max(0, (now - m.sent_ms) / span));
      const x = a.x + (b.x - a.x) * f, y = a.y + (b.y - a.y) * f;
      const colour = codeColour(m.code);
      out += `<circle class="dot${m.is_response ? " response" : ""}" cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="4" fill="${m.is_response ? "#fff" : colour}" stroke="${colour}"><title>${m.is_response ? "response" : "request"} code ${m.code}: ${esc(m.from)} → ${esc(m.to)}</title></circle>`;
    }
    this.dots.innerHTML = out;
  }
}

function line(a, b, cls = "") {
  if (!a || !b) return "";
  return `<line class="${cls}" x1="${a.x}" y1="${a.y}" x2="${b.x}" y2="${b.y}"/>`;
}

function shortId(id) {
  return id.length > 11 ? id.slice(0, 10) + "…" : id;
}

function codeColour(code) {
  return `hsl(${(hash(String(code)) % 360)} 75% 45%)`;
}

// ---------------------------------------------------------------------------------------------
// Consumer groups: ownership lanes (one column per consumer; queue chips slide between columns
// with CSS transitions when a rebalance moves them) and an offsets table with lag bars.

const CHIP_H = 26;

export class GroupsView {
  constructor(root, onStrategy) {
    this.root = root;
    this.groups = new Map();
    this.onStrategy = onStrategy;
  }

  render(snap) {
    const nodeById = new Map(snap.nodes.map((n) => [n.id, n]));
    const seen = new Set();
    for (const g of snap.groups) {
      seen.add(g.name);
      let view = this.groups.get(g.name);
      if (!view) {
        view = this.create(g.name);
        this.groups.set(g.name, view);
      }
      this.update(view, g, nodeById);
    }
    for (const [name, view] of this.groups) if (!seen.has(name)) { view.root.remove(); this.groups.delete(name); }
  }

  create(name) {
    const root = document.createElement("div");
    root.className = "group";
    root.dataset.group = name;
    root.innerHTML = `<div class="group-head"><b>${esc(name)}</b>
      <label>strategy <select class="strategy">
        <option value="averagely">averagely</option><option value="circle">by circle</option>
        <option value="consistent_hash">consistent hash</option></select></label>
      <span class="counts">retry <b class="retry">0</b> → DLQ <b class="dlq">0</b></span></div>
      <div class="lanes"></div><table class="offsets"><thead><tr><th>queue</th><th>owner</th>
      <th>committed</th><th>max</th><th>lag</th></tr></thead><tbody></tbody></table>`;
    const select = root.querySelector(".strategy");
    select.addEventListener("change", () => this.onStrategy(name, select.value));
    this.root.append(root);
    return { root, select, lanes: root.querySelector(".lanes"), tbody: root.querySelector("tbody"), cols: new Map(), chips: new Map(), lastRetry: 0, lastDlq: 0 };
  }

  update(view, g, nodeById) {
    if (document.activeElement !== view.select) view.select.value = g.strategy;
    const retry = view.root.querySelector(".retry"), dlq = view.root.querySelector(".dlq");
    retry.textContent = g.retry_messages;
    dlq.textContent = g.dlq_messages;
    if (g.dlq_messages !== view.lastDlq) pulse(dlq);
    if (g.retry_messages !== view.lastRetry) pulse(retry);
    view.lastRetry = g.retry_messages;
    view.lastDlq = g.dlq_messages;

    // Columns: the group's consumers, then any owner the core reports that is no longer a
    // member (a transient view during rebalance), then "unassigned" when some queue has no owner.
    const cols = [...g.consumers];
    for (const q of g.queues) if (q.owner && !cols.includes(q.owner)) cols.push(q.owner);
    if (g.queues.some((q) => !q.owner)) cols.push("");
    const width = 100 / Math.max(cols.length, 1);
    const rows = new Map(cols.map((c) => [c, 0]));
    cols.forEach((c, i) => {
      let col = view.cols.get(c);
      if (!col) {
        col = document.createElement("div");
        col.className = "lane";
        col.dataset.consumer = c;
        col.innerHTML = `<span class="lane-name"></span>`;
        col.style.left = `${i * width}%`;
        view.lanes.append(col);
        view.cols.set(c, col);
        requestAnimationFrame(() => col.classList.add("shown"));
      }
      col.classList.remove("leaving");
      const node = nodeById.get(c);
      col.classList.toggle("unassigned", c === "");
      col.classList.toggle("down", !!node && !node.up);
      col.classList.toggle("partitioned", !!node && node.partitioned);
      col.classList.toggle("stranger", c !== "" && !g.consumers.includes(c));
      col.querySelector(".lane-name").textContent = c === "" ? "unassigned" : c + (node && !node.up ? " ✕" : "");
      col.style.left = `${i * width}%`;
      col.style.width = `${width}%`;
    });
    for (const [c, col] of view.cols) {
      if (cols.includes(c) || col.classList.contains("leaving")) continue;
      col.classList.add("leaving");
      setTimeout(() => { if (col.classList.contains("leaving")) { col.remove(); view.cols.delete(c); } }, 700);
    }
    const multiTopic = new Set(g.queues.map((q) => q.topic)).size > 1;
    const seen = new Set();
    let maxRows = 0;
    for (const q of g.queues) {
      const key = queueKey(q);
      seen.add(key);
      let chip = view.chips.get(key);
      if (!chip) {
        chip = document.createElement("div");
        chip.className = "qchip";
        chip.dataset.queue = key;
        chip.style.setProperty("--c", queueColour(q.broker, q.topic, q.queue_id));
        view.lanes.append(chip);
        view.chips.set(key, chip);
      }
      const owner = q.owner ?? "";
      const colIndex = cols.indexOf(owner);
      const row = rows.get(owner);
      rows.set(owner, row + 1);
      maxRows = Math.max(maxRows, row + 1);
      if (chip.dataset.owner !== owner) {
        chip.dataset.owner = owner;
        chip.classList.remove("moved");
        void chip.offsetWidth;
        chip.classList.add("moved");
      }
      chip.style.left = `calc(${colIndex * width}% + 6px)`;
      chip.style.top = `${30 + row * CHIP_H}px`;
      chip.style.width = `calc(${width}% - 12px)`;
      const owners = q.owners ?? (q.owner ? [q.owner] : []);
      chip.classList.toggle("contested", owners.length > 1);
      chip.innerHTML = `<span>${esc(multiTopic ? `${q.topic}@` : "")}${esc(q.broker)}:${q.queue_id}${owners.length > 1 ? ` <b title="owned by ${esc(owners.join(", "))}">×${owners.length}</b>` : ""}</span><span class="lag" title="lag">${q.lag}</span>`;
      chip.title = `${q.topic} queue ${q.queue_id} on ${q.broker}: owner ${q.owner ?? "none"}${owners.length > 1 ? ` (also believed owned by ${owners.filter((o) => o !== q.owner).join(", ")}: views disagree mid-rebalance)` : ""}, committed ${q.committed_offset} of ${q.max_offset}, lag ${q.lag}`;
    }
    for (const [key, chip] of view.chips) if (!seen.has(key)) { chip.remove(); view.chips.delete(key); }
    view.lanes.style.height = `${36 + maxRows * CHIP_H}px`;

    const maxLag = Math.max(1, ...g.queues.map((q) => q.lag));
    view.tbody.innerHTML = g.queues.map((q) => `<tr data-queue="${esc(queueKey(q))}">
      <td><i class="sw" style="background:${queueColour(q.broker, q.topic, q.queue_id)}"></i>${esc(q.topic)} · ${esc(q.broker)}:${q.queue_id}</td>
      <td class="owner">${esc(q.owner ?? "—")}</td><td class="committed">${q.committed_offset}</td>
      <td class="max">${q.max_offset}</td>
      <td class="lag"><span class="lagbar" style="width:${(60 * q.lag) / maxLag}px"></span>${q.lag}</td></tr>`).join("");
  }
}

function pulse(el) {
  el.classList.remove("pulse");
  void el.offsetWidth;
  el.classList.add("pulse");
}

// ---------------------------------------------------------------------------------------------
// POP groups: one column per consumer with the messages it holds invisible (a bar counting down
// to the instant they become visible again), who received from which queue, and the group's POP
// retry topic, where unacknowledged messages come back with their reconsume times.

export function renderPopGroups(root, snap) {
  const groups = snap.pop_groups ?? [];
  const now = snap.now_ms;
  root.innerHTML = groups.map((g) => {
    const cols = g.consumers.map((c) => {
      const down = c.state !== "running";
      const held = c.in_flight.map((m) => {
        const total = Math.max(1, m.invisible_until_ms - m.popped_ms);
        const left = Math.max(0, m.invisible_until_ms - now);
        const retry = m.reconsume_times > 0;
        return `<div class="pop-msg${retry ? " retry" : ""}${m.will_ack ? "" : " no-ack"}" data-msg="${esc(m.msg_id)}" style="--c:${queueColour(m.broker, m.topic, m.queue_id)}"
          title="${esc(m.msg_id)} from ${esc(m.topic)} ${esc(m.broker)}:${m.queue_id} @${m.queue_offset}; invisible until ${m.invisible_until_ms} ms${m.will_ack ? "" : " — will not be acknowledged: it comes back"}">
          <span class="pop-q">${retry ? `↻${m.reconsume_times} ` : ""}${esc(m.broker)}:${m.queue_id}@${m.queue_offset}</span>
          <span class="countdown" data-until="${m.invisible_until_ms}">${(left / 1000).toFixed(1)} s</span>
          <span class="vis-bar" style="width:${(100 * left) / total}%"></span></div>`;
      }).join("") || `<div class="pop-idle">${down ? "—" : "waiting for messages"}</div>`;
      const acking = c.behaviour !== "fail";
      return `<div class="pop-consumer${down ? " down" : ""}${acking ? "" : " failing"}" data-consumer="${esc(c.id)}">
        <div class="pop-head"><b>${esc(c.id)}</b>${down ? ` <small>${esc(c.state)}</small>` : ""}</div>
        <div class="pop-controls">${down ? "" : `<label title="acknowledge what it receives (off: every message comes back after its invisible time)"><input type="checkbox" class="pop-ack" data-id="${esc(c.id)}"${acking ? " checked" : ""}> ack</label>
          <button class="pop-fail" data-id="${esc(c.id)}" title="leave the next 3 messages unacknowledged">fail next 3</button>`}
          ${c.fail_next ? `<span class="fail-next" title="messages it will leave unacknowledged">✕${c.fail_next}</span>` : ""}</div>
        <div class="pop-stats">popped <b>${c.popped}</b> · acked <b class="acked">${c.acked}</b> · came back <b class="expired">${c.expired}</b></div>
        <div class="pop-held">${held}</div></div>`;
    }).join("");
    const consumers = g.consumers.map((c) => c.id);
    const queues = g.queues.map((q) => {
      const retry = q.topic === g.retry_topic;
      const total = Object.values(q.popped_by).reduce((a, b) => a + b, 0) || 1;
      const bar = consumers.filter((c) => q.popped_by[c]).map((c) =>
        `<span class="share" style="width:${(100 * q.popped_by[c]) / total}%;background:${consumerColour(c)}" title="${esc(c)}: ${q.popped_by[c]}"></span>`).join("");
      return `<tr class="${retry ? "retry" : ""}" data-queue="${esc(queueKey(q))}"><td><i class="sw" style="background:${queueColour(q.broker, q.topic, q.queue_id)}"></i>${retry ? "retry · " : ""}${esc(q.broker)}:${q.queue_id}</td>
        <td>${q.consumed_offset}</td><td>${q.max_offset}</td><td class="shares">${bar}</td>
        <td class="who">${consumers.filter((c) => q.popped_by[c]).map((c) => `${esc(c.replace("pop-consumer-", "#"))} ${q.popped_by[c]}`).join(" · ")}</td></tr>`;
    }).join("");
    const retried = g.retry_messages.map((m) =>
      `<span class="retry-msg" title="${esc(m.msg_id)}: ${esc(m.broker)}:${m.queue_id}@${m.queue_offset}, stored at ${m.store_ms} ms, reconsume ${m.reconsume_times}">↻${m.reconsume_times} …${esc(m.msg_id.slice(-4))}</span>`).join("");
    return `<div class="pop-group" data-group="${esc(g.name)}">
      <div class="group-head"><b>${esc(g.name)}</b> <small>POP: the broker hands any queue's messages to whoever asks</small>
        <span class="counts">came back via <code>${esc(g.retry_topic)}</code>: <b class="retry-total">${g.retry_total}</b></span></div>
      <div class="pop-consumers" style="grid-template-columns:repeat(${Math.max(1, g.consumers.length)}, minmax(0, 1fr))">${cols}</div>
      <table class="pop-queues"><thead><tr><th>queue</th><th>consumed</th><th>max</th><th>received by</th><th></th></tr></thead><tbody>${queues}</tbody></table>
      <div class="retry-list"><span class="hint">retry topic, oldest first:</span> ${retried || `<span class="hint">empty</span>`}</div></div>`;
  }).join("");
}

function consumerColour(id) {
  return `hsl(${hash(id) % 360} 55% 55%)`;
}

// ---------------------------------------------------------------------------------------------
// Topics: each topic's queues with min and max offset.

export function renderTopics(root, snap) {
  const maxAll = Math.max(1, ...snap.topics.flatMap((t) => t.queues.map((q) => q.max_offset)));
  root.innerHTML = snap.topics.map((t) => `<div class="topic" data-topic="${esc(t.name)}"><h3>${esc(t.name)}</h3>
    <table><thead><tr><th>queue</th><th>min</th><th>max offset</th></tr></thead><tbody>
    ${t.queues.map((q) => `<tr class="topic-queue" data-queue="${esc(`${q.broker}/${t.name}/${q.queue_id}`)}">
      <td><i class="sw" style="background:${queueColour(q.broker, t.name, q.queue_id)}"></i>${esc(q.broker)}:${q.queue_id}</td>
      <td>${q.min_offset}</td><td><span class="obar" style="width:${(80 * q.max_offset) / maxAll}px"></span><span class="max-offset">${q.max_offset}</span></td></tr>`).join("")}
    </tbody></table></div>`).join("") || `<p class="empty">no topics yet</p>`;
}

// ---------------------------------------------------------------------------------------------
// Storage: per broker, the CommitLog as a strip (records as blocks, written and flushed cursors)
// and the ConsumeQueues below it, whose entries point at their record in the strip.

const STRIP_W = 1000, STRIP_X = 110, STRIP_Y = 18, STRIP_H = 30;
const MAX_BLOCKS = 160, CQ_CELLS = 12, CELL_W = 44, LANE_H = 22;

export function renderStorage(root, snap) {
  root.innerHTML = snap.brokers.map((b) => {
    const entries = b.consume_queues.flatMap((cq) => cq.entries.map((e) => ({ ...e, topic: cq.topic, queue_id: cq.queue_id })));
    entries.sort((x, y) => x.commitlog_offset - y.commitlog_offset);
    const shown = entries.slice(-MAX_BLOCKS);
    const lo = shown.length ? Math.min(shown[0].commitlog_offset, b.flushed_offset) : 0;
    const hi = Math.max(b.written_offset, lo + 1);
    const w = STRIP_W - STRIP_X - 10;
    const x = (off) => STRIP_X + ((Math.min(Math.max(off, lo), hi) - lo) / (hi - lo)) * w;
    const byOffset = new Map(shown.map((e) => [e.commitlog_offset, e]));
    let svg = `<text class="axis" x="4" y="${STRIP_Y + 19}">CommitLog</text>
      <rect class="strip" x="${STRIP_X}" y="${STRIP_Y}" width="${w}" height="${STRIP_H}"/>
      <rect class="flushed-area" x="${STRIP_X}" y="${STRIP_Y}" width="${Math.max(0, x(b.flushed_offset) - STRIP_X)}" height="${STRIP_H}"/>`;
    for (const seg of b.segments ?? []) {
      if (seg.start <= lo || seg.start >= hi) continue;
      svg += `<line class="segment" x1="${x(seg.start)}" x2="${x(seg.start)}" y1="${STRIP_Y - 2}" y2="${STRIP_Y + STRIP_H + 2}"><title>segment file ${String(seg.start).padStart(20, "0")}</title></line>`;
    }
    for (const e of shown) {
      svg += `<rect class="rec" data-broker="${esc(b.id)}" data-off="${e.commitlog_offset}" x="${x(e.commitlog_offset).toFixed(1)}" y="${STRIP_Y + 3}"
        width="${Math.max(1, x(e.commitlog_offset + e.size) - x(e.commitlog_offset) - 0.6).toFixed(1)}" height="${STRIP_H - 6}" fill="${queueColour(b.id, e.topic, e.queue_id)}"/>`;
    }
    svg += `<line class="cursor written" x1="${x(b.written_offset)}" x2="${x(b.written_offset)}" y1="${STRIP_Y - 6}" y2="${STRIP_Y + STRIP_H + 4}"/>
      <line class="cursor flushed" x1="${x(b.flushed_offset)}" x2="${x(b.flushed_offset)}" y1="${STRIP_Y - 6}" y2="${STRIP_Y + STRIP_H + 4}"/>
      <text class="axis small" x="${STRIP_X}" y="12">${lo}</text>
      <text class="axis small end" x="${STRIP_X + w}" y="12">written ${b.written_offset} · flushed ${b.flushed_offset}${b.segments ? ` · ${b.segments.length} segment file${b.segments.length === 1 ? "" : "s"}` : ""}</text>`;
    const laneTop = STRIP_Y + STRIP_H + 40;
    b.consume_queues.forEach((cq, i) => {
      const y = laneTop + i * LANE_H;
      svg += `<text class="axis" x="4" y="${y + 14}">${esc(cq.topic.length > 10 ? cq.topic.slice(0, 9) + "…" : cq.topic)}:${cq.queue_id}</text>`;
      const tail = cq.entries.slice(-CQ_CELLS);
      tail.forEach((e, j) => {
        const cx = STRIP_X + j * CELL_W;
        const colour = queueColour(b.id, cq.topic, cq.queue_id);
        if (byOffset.has(e.commitlog_offset)) {
          const tx = x(e.commitlog_offset + e.size / 2);
          svg += `<path class="pointer" d="M${cx + CELL_W / 2 - 2},${y} C${cx + CELL_W / 2},${y - 22} ${tx},${STRIP_Y + STRIP_H + 22} ${tx},${STRIP_Y + STRIP_H}" stroke="${colour}"/>`;
        }
        svg += `<g class="cq-entry" data-broker="${esc(b.id)}" data-off="${e.commitlog_offset}"><rect x="${cx}" y="${y}" width="${CELL_W - 4}" height="${LANE_H - 5}" fill="${colour}"/>
          <text x="${cx + (CELL_W - 4) / 2}" y="${y + 12}">${e.queue_offset}</text></g>`;
      });
      const earlier = (tail[0]?.queue_offset ?? 0) - (cq.min_offset ?? 0);
      if (earlier > 0) svg += `<text class="axis small" x="${STRIP_X + CQ_CELLS * CELL_W + 4}" y="${y + 13}">+${earlier} earlier</text>`;
    });
    const height = laneTop + b.consume_queues.length * LANE_H + 6;
    return `<div class="broker-store${b.up === false ? " down" : ""}" data-broker="${esc(b.id)}"><h3>${esc(b.id)}${b.up === false ? " <small>(down)</small>" : ""}</h3>
      <svg viewBox="0 0 ${STRIP_W} ${height}" style="height:${height}px" class="store-svg" data-written="${b.written_offset}" data-flushed="${b.flushed_offset}">${svg}</svg></div>`;
  }).join("") || `<p class="empty">no brokers</p>`;
}

// ---------------------------------------------------------------------------------------------
// Event log lines.

export function describe(e) {
  const q = (t, id) => `${t}:${id}`;
  switch (e.kind) {
    case "send_failed": return `${e.producer} send failed: ${e.error}`;
    case "sent": return `${e.producer} sent ${e.msg_id} → ${e.broker} ${q(e.topic, e.queue_id)} @${e.queue_offset}`;
    case "stored": return `${e.broker} stored ${q(e.topic, e.queue_id)} @${e.queue_offset} at CommitLog ${e.commitlog_offset} (${e.size} B)`;
    case "flushed": return `${e.broker} flushed to ${e.flushed_offset}`;
    case "pulled": return `${e.consumer} pulled ${e.count} from ${e.broker} ${q(e.topic, e.queue_id)}`;
    case "consumed": return `${e.consumer} consumed ${e.msg_id} ${q(e.topic, e.queue_id)} @${e.queue_offset}: ${e.status}${e.reconsume_times ? ` (reconsume ${e.reconsume_times})` : ""}`;
    case "committed": return `${e.group} committed ${e.broker} ${q(e.topic, e.queue_id)} → ${e.offset}`;
    case "rebalanced": return `${e.group}: ${e.consumer} now owns ${e.queues.length ? e.queues.map((x) => `${x.broker}:${x.queue_id}`).join(", ") : "nothing"}`;
    case "retry": return `${e.group} retries ${e.msg_id} (reconsume ${e.reconsume_times})`;
    case "dlq": return `${e.group} sent ${e.msg_id} to the DLQ`;
    case "node_down": return `${e.id} is down`;
    case "node_up": return `${e.id} is up`;
    case "partitioned": return `${e.id} is partitioned`;
    case "healed": return `${e.id} is healed`;
    case "popped": return `${e.consumer} popped ${e.msg_id} ${q(e.topic, e.queue_id)} @${e.queue_offset}${e.reconsume_times ? ` (came back: reconsume ${e.reconsume_times})` : ""}, invisible until ${e.invisible_until_ms}${e.will_ack ? "" : " — will not ack"}`;
    case "pop_acked": return `${e.consumer} acked ${e.msg_id} ${q(e.topic, e.queue_id)} @${e.queue_offset}`;
    case "pop_ack_failed": return `${e.consumer} could not ack ${e.msg_id}: ${e.error}`;
    case "pop_expired": return `${e.msg_id} held by ${e.consumer} is visible again (not acked in time)`;
    case "pop_revived": return `${e.group}: ${e.msg_id} came back in ${q(e.topic, e.queue_id)} @${e.queue_offset}, reconsume ${e.reconsume_times}`;
    case "message": return `${e.from} → ${e.to} code ${e.code} (${e.bytes} B, arrives ${e.deliver_ms})`;
    default: {
      const { t_ms, kind, ...rest } = e;
      return `${kind} ${JSON.stringify(rest)}`;
    }
  }
}
