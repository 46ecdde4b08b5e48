// The agent page, the history (slider, tree_at, "why did this restart"), discoveries and cluster views.
import { Unauthorized, api, confirmAction, h, when } from "./util.js";

const $ = (id) => document.getElementById(id);
const json = (value) => JSON.stringify(value, null, 2);

function eventLine(event, extra = []) {
  return [
    h("span", { class: "muted" }, `#${event.seq}`), h("span", { class: "muted" }, when(event.occurred_at)),
    h("span", { class: `badge state-${event.event_type}` }, event.event_type),
    h("span", {}, event.agent_id || event.supervisor), h("span", { class: "muted" }, event.reason || ""),
    event.trace_id ? h("span", { class: "muted" }, `trace ${event.trace_id}`) : null, ...extra,
  ];
}

function example(params) {  // a payload skeleton from the kind's parameter description
  const out = {};
  for (const [name, p] of Object.entries(params || {})) {
    if (!p.required) continue;
    out[name] = p.type.startsWith("int") || p.type.startsWith("float") ? 0 : p.type === "bool" ? false
      : p.type === "list" ? [] : p.type === "dict" ? {} : "";
  }
  return out;
}

export class AgentView {
  constructor(app) {
    this.app = app;
    this.id = null;
    this.commands = {};
    $("command-form").addEventListener("submit", (e) => this.send(e));
    $("command-name").addEventListener("change", () => this.describe(true));
    $("restart-agent").addEventListener("click", () => this.act("restart"));
    $("stop-agent").addEventListener("click", () => this.act("stop"));
    this.listener = (batch) => {
      const mine = batch.filter((e) => e.agent_id === this.id);
      if (mine.length) this.load(false);
    };
  }

  enter(id) {
    this.id = id;
    $("agent-title").textContent = `Agent ${id}`;
    $("command-result").textContent = "";
    this.app.listeners.add(this.listener);
    this.load(true);
  }

  leave() {
    this.app.listeners.delete(this.listener);
  }

  async load(first) {
    const id = this.id;
    let data;
    try {
      data = await api(`/agents/${encodeURIComponent(id)}`);
    } catch (error) {
      if (!(error instanceof Unauthorized)) $("agent-status").textContent = error.message;
      return;
    }
    if (id !== this.id) return;
    const a = data.agent;
    $("agent-status").replaceChildren(
      h("span", { class: `badge state-${a.state}` }, a.state), h("span", {}, `kind ${a.kind}`),
      h("span", {}, `restarts ${a.restart_count}`), h("span", {}, `mailbox ${a.mailbox_depth ?? "-"}`),
      h("span", {}, `supervisor ${a.supervisor}`), h("span", {}, `restart policy ${a.restart}`),
      a.last_exit ? h("span", { class: "muted" }, `last exit: ${a.last_exit}`) : null);
    $("agent-spec").textContent = json({ kind: a.kind, restart: a.restart, supervisor: a.supervisor, config: a.config });
    $("agent-state").replaceChildren(data.state
      ? h("div", {}, h("p", {}, `version ${data.state.version} · epoch ${data.state.epoch ?? "-"} · ${data.state.bytes} bytes`
          + (data.state.committed_at ? ` · committed ${data.state.committed_at}` : "")), h("pre", {}, json(data.state.state)))
      : h("p", { class: "muted" }, "Not a durable agent: no state is kept."));
    $("agent-events").replaceChildren(...data.events.slice().reverse().map((e) => h("li", {}, eventLine(e))));
    if (first) {
      this.commands = data.commands;
      const select = $("command-name");
      select.replaceChildren(...Object.keys(this.commands).map((c) => h("option", { value: c }, c)));
      const preferred = Object.keys(this.commands).find((c) => !["status", "ping", "pause", "resume"].includes(c));
      if (preferred) select.value = preferred;
      this.describe(true);
    }
  }

  describe(reset) {
    const spec = this.commands[$("command-name").value];
    if (!spec) return;
    const params = Object.entries(spec.params).map(([n, p]) => `${n}${p.required ? "" : "?"}: ${p.type}`);
    $("command-params").textContent = params.length ? `parameters: ${params.join(", ")}${spec.more_params ? ", …" : ""}`
      : spec.more_params ? "any payload" : "no parameters";
    if (reset) $("command-payload").value = json(example(spec.params));
  }

  async send(event) {
    event.preventDefault();
    let payload;
    try {
      payload = JSON.parse($("command-payload").value || "{}");
      if (payload === null || typeof payload !== "object" || Array.isArray(payload)) throw new Error("the payload must be a JSON object");
    } catch (error) {
      $("payload-error").textContent = `Payload: ${error.message}`;
      $("command-payload").focus();
      return;
    }
    $("payload-error").textContent = "";
    $("command-result").textContent = "sending…";
    try {
      const reply = await api(`/agents/${encodeURIComponent(this.id)}/command`, {
        method: "POST", body: JSON.stringify({ command: $("command-name").value, payload }) });
      $("command-result").textContent = json(reply.result);
    } catch (error) {
      if (!(error instanceof Unauthorized)) $("command-result").textContent = `Error: ${error.message}`;
    }
  }

  async act(what) {
    const verb = what === "restart" ? "Restart" : "Stop";
    if (!(await confirmAction(`${verb} agent ${this.id}?`))) return;
    try {
      await api(`/agents/${encodeURIComponent(this.id)}/${what}`, { method: "POST", body: "{}" });
      $("command-result").textContent = what === "restart" ? "restarted" : "stopped";
      if (what === "stop") location.hash = "#/tree";
    } catch (error) {
      if (!(error instanceof Unauthorized)) $("command-result").textContent = `Error: ${error.message}`;
    }
  }
}

function treeList(node) {
  const label = node.type === "supervisor"
    ? `${node.id} (supervisor, ${node.strategy || "?"}, intensity ${node.intensity ?? "?"} / ${node.period_s ?? "?"} s)`
    : `${node.id} (${node.kind})`;
  return h("li", {}, h("span", { class: `badge state-${node.state}` }, node.state), " ",
    h("span", {}, `${label} · restarts ${node.restart_count ?? 0}`),
    node.children && node.children.length ? h("ul", {}, node.children.map(treeList)) : null);
}

export class HistoryView {
  constructor(app) {
    this.app = app;
    this.events = [];
    this.timer = null;
    $("history-slider").addEventListener("input", () => this.moved());
  }

  async enter() {
    const head = await api("/events?limit=1").catch(() => null);
    if (!head) return;
    const slider = $("history-slider");
    const max = head.head_seq;
    const first = head.events.length ? head.events[0].seq : 0;
    slider.min = String(Math.min(first, max));
    slider.max = String(max);
    if (!this.entered) slider.value = String(max);
    this.entered = true;
    await this.show(Number(slider.value));
  }

  leave() {}

  moved() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.show(Number($("history-slider").value)), 120);
  }

  async show(seq) {
    const [snap, page] = await Promise.all([
      api(`/tree_at?at=${seq}`), api(`/events?after_seq=${Math.max(0, seq - 100)}&limit=200`)]);
    if (Number($("history-slider").value) !== seq) return;  // the slider moved on meanwhile
    const at = page.events.find((e) => e.seq === seq);
    $("history-at").textContent = `seq ${seq}${at ? ` · ${when(at.occurred_at)}` : ""} of ${page.head_seq}`;
    $("history-tree").replaceChildren(...snap.nodes.map((n) => h("li", {}, `node ${n.node_id}`, h("ul", {}, n.tree.id ? treeList(n.tree) : []))));
    if (!snap.nodes.length) $("history-tree").replaceChildren(h("li", { class: "muted" }, "nothing ran yet"));
    this.events = page.events;
    let current = null;
    $("history-events").replaceChildren(...page.events.map((e) => {
      const li = h("li", { "aria-current": e.seq === seq ? "true" : null },
        eventLine(e, [h("button", { type: "button", onclick: () => this.select(e) }, `Select event ${e.seq}`)]));
      if (e.seq === seq) current = li;
      return li;
    }));
    if (current) current.scrollIntoView({ block: "center" });
  }

  async select(event) {
    $("history-slider").value = String(event.seq);
    await this.show(event.seq);
    const chain = await api(`/why?seq=${event.seq}`);
    const body = [];
    body.push(h("p", {}, `Event #${event.seq}: ${event.event_type} of ${event.agent_id || event.supervisor}.`));
    const f = chain.failure;
    body.push(h("h4", {}, "The failure"), f
      ? h("p", {}, `#${f.seq} at ${when(f.occurred_at)}: ${f.reason || "(no reason)"}`, f.trace_id ? ` · trace ${f.trace_id}` : "")
      : h("p", { class: "muted" }, "No failure before it (a restart on request?)."));
    const w = chain.window;
    body.push(h("h4", {}, "Restarts in the intensity window"), h("p", {},
      `${w.used} restart(s) within ${w.period_s ?? "?"} s; the supervisor allows ${w.intensity ?? "?"}`
      + (w.exceeded ? ": exceeded." : ".")));
    body.push(h("ol", { class: "events" }, chain.previous_restarts.map((e) => h("li", {}, eventLine(e)))));
    body.push(h("h4", {}, "Escalation"), chain.escalation
      ? h("p", {}, eventLine(chain.escalation))
      : h("p", { class: "muted" }, "None: the supervisor kept going."));
    $("why-body").replaceChildren(...body);
    $("why").hidden = false;
  }
}

export class DiscoveriesView {
  constructor(app) {
    this.app = app;
    this.source = null;
    $("disc-filter").addEventListener("submit", (e) => {
      e.preventDefault();
      this.open();
    });
  }

  enter() {
    this.open();
  }

  leave() {
    if (this.source) this.source.close();
    this.source = null;
  }

  open() {
    this.leave();
    if (!this.app.session.discoveries) {
      $("disc-list").replaceChildren(h("li", { class: "muted" }, "Discovery sharing is not available on this node."));
      return;
    }
    const form = new FormData($("disc-filter"));
    const query = new URLSearchParams();
    for (const [k, v] of form) if (String(v).trim() && !(k === "min_confidence" && Number(v) === 0)) query.set(k, String(v).trim());
    $("disc-list").replaceChildren();
    const source = (this.source = new EventSource(`/ui/api/discoveries/stream?${query}`));
    source.addEventListener("discovery", (m) => {
      const d = JSON.parse(m.data);
      const list = $("disc-list");
      list.prepend(h("li", {}, h("span", { class: "muted" }, `#${d.seq}`), h("span", { class: "muted" }, when(d.occurred_at)),
        h("span", { class: "badge" }, d.discovery_type), h("span", {}, d.agent_id),
        h("span", {}, `${Math.round(d.confidence * 100)}%`), h("span", {}, d.content)));
      while (list.childElementCount > 500) list.lastElementChild.remove();
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) this.app.banner("The discovery feed was refused; check the filters.");
    };
  }
}

export class ClusterView {
  constructor(app) {
    this.app = app;
  }

  async enter() {
    try {
      const data = await api("/cluster");
      const cols = ["node_id", "state", "agents", "max_agents", "last_seen", "lease_until", "expired", "http_url"];
      $("cluster-body").replaceChildren(h("table", {},
        h("caption", { class: "muted" }, `as seen by ${data.node_id}`),
        h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c.replace("_", " "))))),
        h("tbody", {}, data.nodes.map((n) => h("tr", {}, cols.map((c) => h("td", {},
          c === "http_url" && n[c] ? h("a", { href: `${n[c]}/ui` }, n[c]) : String(n[c] ?? "")) ))))));
    } catch (error) {
      if (!(error instanceof Unauthorized)) $("cluster-body").replaceChildren(h("p", { class: "muted" }, error.message));
    }
  }

  leave() {}
}
