// The live tree: a model fed by snapshots (/ui/api/tree) and supervision events, and a virtualized list.
import { h } from "./util.js";

const ROW_PX = 28;
const OVERSCAN = 8;
// Event type -> the state it leaves its subject in (started-like events also create it).
const STATE_OF = {
  started: "running", restarted: "running", recovered: "running", taken_over: "running", state_restored: "running",
  resumed: "running", failed: "failed", restart_scheduled: "restarting", paused: "paused", stopped: "stopped",
  fenced: "stopped", intensity_exceeded: "failed", escalated: "failed", shutdown_timeout: "stopped",
  recovery_failed: "not_recovered",
};
const GONE = ["shutdown: stopped on request", "not restarted", "fenced"];
// A live snapshot says what the incarnation is doing; the tree shows the supervision state, as events do.
const LIVE = { idle: "running", busy: "running", starting: "running", stopping: "stopped" };

function pathOf(item) {
  return item.path || (item.supervisor ? `${item.supervisor}/${item.id}` : item.id);
}

export class TreeModel {
  constructor(nodeId) {
    this.nodeId = nodeId;
    this.items = new Map();  // node|path -> item
    this.roots = [];         // root items, one per node
    this.headSeq = 0;
    this.recent = [];        // events newer than the last snapshot's head (re-applied over it)
  }

  key(node, path) {
    return `${node}|${path}`;
  }

  // Replace one node's part (default: this node's) with a fresh snapshot, then re-apply events the snapshot
  // may predate.
  load(tree, headSeq, nodeId = this.nodeId) {
    for (const [key] of this.items) if (key.startsWith(`${nodeId}|`)) this.items.delete(key);
    this.roots = this.roots.filter((r) => r.node_id !== nodeId);
    const add = (raw, parent) => {
      const item = {
        id: raw.id, path: pathOf(raw), type: raw.type, kind: raw.kind, state: LIVE[raw.state] || raw.state,
        busy: raw.state === "busy",
        restart_count: raw.restart_count || 0, mailbox_depth: raw.mailbox_depth, strategy: raw.strategy,
        intensity: raw.intensity, period_s: raw.period_s, node_id: nodeId, children: [], parent,
        restart_due: raw.restart_in_s !== undefined ? performance.now() + raw.restart_in_s * 1000 : null,
      };
      this.items.set(this.key(nodeId, item.path), item);
      for (const child of raw.children || []) item.children.push(add(child, item));
      return item;
    };
    if (tree && tree.id) {
      if (nodeId === this.nodeId) this.roots.unshift(add(tree, null));
      else this.roots.push(add(tree, null));
    }
    this.headSeq = headSeq || 0;
    this.recent = this.recent.filter((e) => e.seq > this.headSeq);
    for (const event of this.recent) this.apply(event);
  }

  // Apply a batch; true if the tree's shape changed (a snapshot then fills in what events do not say).
  applyAll(batch) {
    let structural = false;
    for (const event of batch) {
      this.recent.push(event);
      structural = this.apply(event) || structural;
    }
    if (this.recent.length > 5000) this.recent.splice(0, this.recent.length - 5000);
    return structural;
  }

  apply(event) {
    const node = event.node_id;
    const path = event.agent_id ? `${event.supervisor}/${event.agent_id}` : event.supervisor;
    let item = this.items.get(this.key(node, path));
    let structural = false;
    const state = STATE_OF[event.event_type];
    if (!item && state === "running") {
      item = this.create(node, event, path);
      structural = true;
    }
    if (!item || !state) return structural;
    item.state = state;
    item.restart_count = event.restart_count ?? item.restart_count;
    item.restart_due = event.event_type === "restart_scheduled"
      ? performance.now() + (event.data?.delay_s || 0) * 1000 : null;
    if (event.event_type === "failed") item.last_exit = event.reason;
    if (event.event_type === "stopped" && GONE.some((g) => (event.reason || "").startsWith(g))) {
      this.remove(item);
      structural = true;
    }
    return structural;
  }

  create(node, event, path) {
    const parentPath = event.agent_id ? event.supervisor : event.supervisor.split("/").slice(0, -1).join("/");
    let parent = this.items.get(this.key(node, parentPath));
    if (!parent && node !== this.nodeId) parent = this.otherRoot(node);
    const item = {
      id: event.agent_id || event.supervisor.split("/").pop(), path, node_id: node, kind: event.kind,
      type: event.kind === "supervisor" ? "supervisor" : "agent", state: "running",
      restart_count: event.restart_count || 0, children: [], parent: parent || null,
    };
    this.items.set(this.key(node, path), item);
    if (parent) parent.children.push(item);
    else this.roots.push(item);
    return item;
  }

  otherRoot(node) {  // another node's agents, known from its events alone
    const key = this.key(node, "");
    let root = this.items.get(key);
    if (!root) {
      root = { id: `node ${node}`, path: "", node_id: node, type: "supervisor", kind: "node", state: "running",
               restart_count: 0, children: [], parent: null, strategy: "from its events" };
      this.items.set(key, root);
      this.roots.push(root);
    }
    return root;
  }

  remove(item) {
    this.items.delete(this.key(item.node_id, item.path));
    const siblings = item.parent ? item.parent.children : this.roots;
    const at = siblings.indexOf(item);
    if (at >= 0) siblings.splice(at, 1);
  }

  // Depth-first rows, filtered by id or kind (a match keeps its ancestors).
  rows(filter) {
    const out = [];
    const needle = (filter || "").trim().toLowerCase();
    const walk = (item, depth) => {
      const start = out.length;
      out.push({ item, depth });
      let kept = !needle || item.id.toLowerCase().includes(needle) || (item.kind || "").toLowerCase().includes(needle);
      for (const child of item.children) kept = walk(child, depth + 1) || kept;
      if (!kept) out.length = start;
      return kept;
    };
    for (const root of this.roots) walk(root, 0);
    return out;
  }

  agentCount() {
    let n = 0;
    for (const item of this.items.values()) if (item.type === "agent") n += 1;
    return n;
  }
}

function countdown(item) {
  if (!item.restart_due) return null;
  const left = Math.max(0, (item.restart_due - performance.now()) / 1000);
  return `restart in ${left.toFixed(1)} s`;
}

// Only the rows in view exist in the DOM; each is kept (by path) while it stays in view.
export class TreeView {
  constructor(el, model, filterInput, countLabel) {
    this.el = el;
    this.model = model;
    this.filterInput = filterInput;
    this.countLabel = countLabel;
    this.spacer = h("div", { class: "spacer" });
    el.append(this.spacer);
    this.shown = new Map();
    this.rowsCache = [];
    this.cursor = 0;
    this.frame = false;
    el.addEventListener("scroll", () => this.paint());
    filterInput.addEventListener("input", () => this.render());
    el.addEventListener("keydown", (e) => this.key(e));
    this.ticker = setInterval(() => this.tick(), 200);
  }

  render() {
    this.rowsCache = this.model.rows(this.filterInput.value);
    const agents = this.model.agentCount();
    this.countLabel.textContent = `${agents.toLocaleString("en-US")} agent${agents === 1 ? "" : "s"}`;
    this.paint();
  }

  paint() {
    const rows = this.rowsCache;
    this.spacer.style.height = `${rows.length * ROW_PX}px`;
    const top = this.el.scrollTop;
    const height = this.el.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_PX) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((top + height) / ROW_PX) + OVERSCAN);
    const keep = new Set();
    for (let i = first; i < last; i++) {
      const { item, depth } = rows[i];
      const key = `${item.node_id}|${item.path}`;
      keep.add(key);
      let row = this.shown.get(key);
      if (!row) {
        row = h("div", { role: "listitem", class: "row" });
        this.shown.set(key, row);
        this.spacer.append(row);
      }
      row.style.transform = `translateY(${i * ROW_PX}px)`;
      row.style.paddingLeft = `${8 + depth * 18}px`;
      row.classList.toggle("cursor", i === this.cursor);
      this.fill(row, item);
    }
    for (const [key, row] of this.shown) {
      if (!keep.has(key)) {
        row.remove();
        this.shown.delete(key);
      }
    }
  }

  fill(row, item) {
    const parts = [item.state, item.restart_count, item.mailbox_depth, countdown(item), item.strategy, item.busy];
    const signature = parts.join("|");
    if (row.dataset.sig === signature) return;
    row.dataset.sig = signature;
    const facts = [];
    if (item.type === "supervisor") {
      facts.push(h("span", { class: "fact" }, item.strategy || ""));
      if (item.intensity !== undefined) facts.push(h("span", { class: "fact" }, `intensity ${item.intensity} / ${item.period_s} s`));
    } else {
      facts.push(h("span", { class: "fact" }, item.kind || ""));
      if (item.mailbox_depth !== undefined) facts.push(h("span", { class: "fact" }, `mailbox ${item.mailbox_depth}`));
      if (item.busy && item.state === "running") facts.push(h("span", { class: "fact" }, "busy"));
    }
    facts.push(h("span", { class: "fact" }, `restarts ${item.restart_count}`));
    const due = countdown(item);
    if (due) facts.push(h("span", { class: "fact" }, due));
    const name = item.type === "agent" && item.node_id === this.model.nodeId
      ? h("a", { href: `#/agent/${encodeURIComponent(item.id)}` }, item.id)
      : h("span", { class: "sup" }, item.id);
    row.replaceChildren(h("span", { class: `badge state-${item.state}` }, item.state), name, ...facts);
  }

  tick() {  // backoff countdowns
    for (const row of this.shown.values()) if (row.textContent.includes("restart in")) { this.paint(); return; }
  }

  key(event) {
    const rows = this.rowsCache;
    if (!rows.length) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      this.cursor = Math.max(0, Math.min(rows.length - 1, this.cursor + (event.key === "ArrowDown" ? 1 : -1)));
      const y = this.cursor * ROW_PX;
      if (y < this.el.scrollTop) this.el.scrollTop = y;
      else if (y + ROW_PX > this.el.scrollTop + this.el.clientHeight) this.el.scrollTop = y + ROW_PX - this.el.clientHeight;
      this.paint();
    } else if (event.key === "Enter") {
      const { item } = rows[this.cursor];
      if (item.type === "agent") location.hash = `#/agent/${encodeURIComponent(item.id)}`;
    }
  }
}
