// The console: login, routing, the live event stream and the banner. Plain ES modules, no build step.
import { TreeModel, TreeView } from "./tree.js";
import { Unauthorized, api, onUnauthorized } from "./util.js";
import { AgentView, ClusterView, DiscoveriesView, HistoryView } from "./views.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["login", "tree", "agent", "history", "discoveries", "cluster"];

// Supervision events from /ui/api/events/stream, handed over in batches (one per animation frame).
class LiveStream {
  constructor(onBatch, onState) {
    this.onBatch = onBatch;
    this.onState = onState;
    this.lastSeq = null;
    this.queue = [];
    this.pending = false;
    this.source = null;
    this.down = false;
    this.retryMs = 1000;
  }

  start(afterSeq) {
    this.lastSeq = afterSeq;
    this.open();
  }

  stop() {
    if (this.source) this.source.close();
    this.source = null;
    clearTimeout(this.timer);
  }

  open() {
    this.stop();
    const query = this.lastSeq !== null ? `?last_event_id=${this.lastSeq}` : "";
    const source = (this.source = new EventSource(`/ui/api/events/stream${query}`));
    source.addEventListener("supervision", (message) => {
      const event = JSON.parse(message.data);
      this.lastSeq = event.seq;
      this.queue.push(event);
      if (!this.pending) {
        this.pending = true;
        requestAnimationFrame(() => this.flush());
      }
    });
    source.onopen = () => {
      this.retryMs = 1000;
      if (this.down) {
        this.down = false;
        this.onState("up");
      }
    };
    source.onerror = () => {
      if (!this.down) {
        this.down = true;
        this.onState("down");
      }
      if (source.readyState === EventSource.CLOSED) {  // refused (401, 503...): retry ourselves
        this.timer = setTimeout(() => this.recheck(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, 10000);
      }  // else the browser reconnects by itself, with Last-Event-ID
    };
  }

  async recheck() {
    try {
      await api("/session");
    } catch (error) {
      if (error instanceof Unauthorized) return this.stop();
    }
    this.open();
  }

  flush() {
    this.pending = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length) this.onBatch(batch);
  }
}

class Console {
  constructor() {
    this.session = null;
    this.listeners = new Set();  // views that want each batch of events
  }

  async boot() {
    $("login-form").addEventListener("submit", (e) => this.login(e));
    $("logout").addEventListener("click", () => this.logout());
    window.addEventListener("hashchange", () => this.route());
    try {
      this.session = await api("/session");
    } catch (error) {
      if (error instanceof Unauthorized) this.showLogin("");
      else this.fatal(error);
      return;
    }
    await this.start();
  }

  async login(event) {
    event.preventDefault();
    const token = $("token").value.trim();
    const res = await fetch("/ui/login", { method: "POST", credentials: "same-origin",
                                           headers: { authorization: `Bearer ${token}` } });
    if (!res.ok) {
      this.showLogin(res.status === 401 ? "That token was refused." : `Sign-in failed: ${res.status}`);
      $("token").select();
      return;
    }
    $("token").value = "";
    this.session = await api("/session");
    await this.start();
  }

  async logout() {
    await fetch("/ui/logout", { method: "POST", credentials: "same-origin" });
    this.showLogin("Signed out.");
  }

  showLogin(message) {
    if (this.live) this.live.stop();
    clearInterval(this.refresher);
    this.started = false;
    $("top").hidden = true;
    this.banner(null);
    this.show("login");
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  fatal(error) {
    this.banner(`The console could not start: ${error.message}`);
  }

  async start() {
    if (this.started) return;
    this.started = true;
    $("top").hidden = false;
    $("node-label").textContent = `node ${this.session.node_id} · ${this.session.source}`;
    this.model = new TreeModel(this.session.node_id);
    this.tree = new TreeView($("tree-list"), this.model, $("tree-filter"), $("tree-count"));
    this.agent = new AgentView(this);
    this.history = new HistoryView(this);
    this.discoveries = new DiscoveriesView(this);
    this.cluster = new ClusterView(this);
    const snap = await this.refresh();
    this.live = new LiveStream((batch) => this.onBatch(batch), (state) => this.onStream(state));
    this.live.start(snap ? snap.head_seq : null);
    this.refresher = setInterval(() => this.refresh(), 5000);  // mailbox depths (events do not carry them)
    this.route();
  }

  async refresh() {
    try {
      const snap = await api("/tree");
      this.model.load(snap.tree, snap.head_seq);
      for (const [node, tree] of Object.entries(snap.others || {})) this.model.load(tree, snap.head_seq, node);
      this.tree.render();
      return snap;
    } catch (error) {
      if (!(error instanceof Unauthorized)) this.banner(`Could not read the tree: ${error.message}`);
      return null;
    }
  }

  onBatch(batch) {
    const structural = this.model.applyAll(batch);
    this.tree.render();
    for (const listener of this.listeners) listener(batch);
    $("live-label").textContent = `live · seq ${batch[batch.length - 1].seq}`;
    if (structural) {
      clearTimeout(this.structuralTimer);
      this.structuralTimer = setTimeout(() => this.refresh(), 400);
    }
  }

  onStream(state) {
    if (state === "down") {
      this.banner("Live updates lost: reconnecting…");
      $("live-label").textContent = "reconnecting…";
    } else {
      this.banner("Live updates restored.", true);
      this.refresh();
      setTimeout(() => this.banner(null), 3000);
    }
  }

  banner(text, ok = false) {
    const el = $("banner");
    el.hidden = !text;
    el.textContent = text || "";
    el.classList.toggle("ok", ok);
  }

  show(name) {
    for (const view of VIEWS) $(`${view}-view`).hidden = view !== name;
    for (const link of document.querySelectorAll("nav a")) {
      if (link.dataset.view === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  route() {
    if (!this.started) return;
    const [, view = "tree", ...rest] = (location.hash || "#/tree").split("/");
    for (const v of [this.agent, this.history, this.discoveries, this.cluster]) v.leave();
    if (view === "agent" && rest.length) {
      this.show("agent");
      this.agent.enter(decodeURIComponent(rest.join("/")));
    } else if (view === "history") {
      this.show("history");
      this.history.enter();
    } else if (view === "discoveries") {
      this.show("discoveries");
      this.discoveries.enter();
    } else if (view === "cluster") {
      this.show("cluster");
      this.cluster.enter();
    } else {
      this.show("tree");
      this.tree.render();
    }
    $("main").focus({ preventScroll: true });
  }
}

const console_ = new Console();
onUnauthorized((message) => console_.showLogin(message));
console_.boot();
