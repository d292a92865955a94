// The fleet dashboard's page. No framework and no build step: the server pushes the first rows of
// the board and then every change as server-sent events (/api/events: "board" first, then
// "delta"), and this script keeps the table, the timeline and the open task current. A board may
// hold 100,000 tasks: the page holds only the first rows of its view (every task, one state, or
// a search), fetches more from /api/board as the table is scrolled, and keeps what it holds the
// first rows of the view by ordering and filtering exactly as the server does
// (dashboard/window.py). Everything from the volume (prompts, logs, patches, errors) is written
// by agents that may be hostile: it is only ever set as text (textContent), never parsed as HTML.

const STATES = ["running", "pending", "blocked", "lost", "failed", "timeout", "cancelled", "invalid", "success"];
const WAITING = new Set(["pending", "blocked", "lost"]);
const PAGE_ROWS = 100; // dashboard/window.py's PAGE_ROWS
const TIMELINE_LANES = 40; // and its TIMELINE_LANES

const model = {
  rows: [], // the first rows of the view, in the page's order
  complete: false, // rows holds every row of the view
  total: 0, // rows in the view
  lanes: [], // the timeline: the view's tasks whose first attempt started last, latest first
  lanesComplete: false,
  summary: null,
  seq: 0, // the version of the board the rows are of
  wanted: PAGE_ROWS, // rows the table wants: more as it is scrolled to its end
  fetching: null, // the deltas that arrived while a window was being fetched
  again: false, // fetch the window again when this fetch is done
  selected: null, filter: null, search: "",
};
const $ = (id) => document.getElementById(id);

// --- small helpers -------------------------------------------------------------------------

function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "data") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.setAttribute("class", value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function money(usd) {
  if (usd === null || usd === undefined) return "";
  return usd < 1 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${String(seconds % 60).padStart(2, "0")}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ${String(Math.floor(seconds / 60) % 60).padStart(2, "0")}m`;
  return `${Math.floor(seconds / 86400)}d ${Math.floor(seconds / 3600) % 24}h`;
}

const ms = (iso) => (iso ? Date.parse(iso) : NaN);
const ago = (iso) => (iso ? `${duration((Date.now() - ms(iso)) / 1000)} ago` : "");
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "");

function stateBadge(state, cls = "state") {
  return h("span", { class: `${cls} s-${state}` }, h("span", { class: "dot" }), state);
}

function rowTime(row) {
  // running: how long this attempt has run; finished: how long it took; else: age
  const spans = row.attempts || [];
  const last = spans[spans.length - 1];
  if (row.state === "running" && last && last.started_at) return (Date.now() - ms(last.started_at)) / 1000;
  if (row.duration_s !== null && row.duration_s !== undefined) return row.duration_s;
  return row.created_at ? (Date.now() - ms(row.created_at)) / 1000 : null;
}

// --- the connection ------------------------------------------------------------------------

function setConn(state, text) {
  $("conn").dataset.state = state;
  $("conn-text").textContent = text;
}

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => setConn("live", "live"));
  source.addEventListener("error", () => setConn("reconnecting", "reconnecting…"));
  source.addEventListener("board", (event) => {
    performance.mark("board-received");
    const message = JSON.parse(event.data);
    if (defaultView() && model.wanted <= PAGE_ROWS) takeWindow(message);
    else { model.seq = message.seq; model.summary = message.summary; renderSummary(); loadWindow(); }
    setConn("live", "live");
    performance.mark("board-rendered");
  });
  source.addEventListener("delta", (event) => applyDelta(JSON.parse(event.data)));
}

// --- the view: which rows the page holds ------------------------------------------------------

const defaultView = () => !model.filter && !model.search;

function viewQuery(offset, limit) {
  const query = new URLSearchParams({ offset: String(offset), limit: String(limit) });
  if (model.filter) query.set("state", model.filter);
  if (model.search) query.set("q", model.search);
  return query.toString();
}

const rank = (row) => (row.state === "running" ? 0 : WAITING.has(row.state) ? 1 : 2);
const compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0); // code points, as Python compares

function pageOrder(a, b) {
  // what needs attention first: running (newest first), then waiting (in the queue's order: the
  // highest priority first, then the oldest), then the rest (newest first); ties by id
  return rank(a) - rank(b)
    || (rank(a) === 1
      ? (b.priority || 0) - (a.priority || 0) || compare(a.created_at || "", b.created_at || "")
      : compare(b.created_at || "", a.created_at || ""))
    || compare(a.id, b.id);
}

function firstStart(row) {
  const spans = row.attempts || [];
  return spans.length && spans[0].started_at ? ms(spans[0].started_at) : NaN;
}

const laneOrder = (a, b) => firstStart(b) - firstStart(a) || compare(a.id, b.id);

function inView(row) {
  if (model.filter && row.state !== model.filter) return false;
  if (!model.search) return true;
  const needle = model.search.toLowerCase();
  return row.id.toLowerCase().includes(needle) || (row.prompt || "").toLowerCase().includes(needle);
}

function viewTotal() {
  const summary = model.summary || { counts: {}, tasks: 0 };
  if (model.search) return model.total; // known only to the server: fetched again on changes
  return model.filter ? summary.counts[model.filter] || 0 : summary.tasks || 0;
}

function merged(items, complete, changed, removed, order, belongs) {
  // items are the first rows of an ordered view; after the change they still are: the changed
  // rows leave, and come back where they now sort if they still belong there (before the last
  // row kept, unless every row of the view is held)
  const gone = new Set(removed);
  for (const row of changed) gone.add(row.id);
  const kept = items.filter((row) => !gone.has(row.id));
  const last = kept[kept.length - 1];
  const entering = changed.filter((row) => belongs(row) && (complete || (last && order(row, last) < 0)));
  return entering.length ? kept.concat(entering).sort(order) : kept;
}

function takeWindow(message) {
  model.seq = message.seq;
  model.summary = message.summary;
  model.rows = message.rows;
  model.total = message.total;
  model.complete = message.offset + message.rows.length >= message.total;
  model.lanes = message.timeline;
  model.lanesComplete = message.timeline.length < TIMELINE_LANES;
  renderAll();
}

function applyDelta(message) {
  if (model.fetching) model.fetching.push(message);
  if (message.seq <= model.seq) return; // the rows held have it already
  model.seq = message.seq;
  model.summary = message.summary;
  const held = new Set(model.rows.map((row) => row.id));
  model.rows = merged(model.rows, model.complete, message.rows, message.removed, pageOrder, inView);
  if (model.rows.length > model.wanted + PAGE_ROWS) { model.rows = model.rows.slice(0, model.wanted); model.complete = false; }
  const lanes = merged(model.lanes, model.lanesComplete, message.rows, message.removed, laneOrder,
    (row) => inView(row) && !Number.isNaN(firstStart(row)));
  model.lanes = lanes.slice(0, TIMELINE_LANES);
  model.lanesComplete = model.lanesComplete && lanes.length <= TIMELINE_LANES;
  if (model.search && message.rows.some((row) => inView(row) || held.has(row.id))) scheduleWindow(300);
  model.total = viewTotal();
  if (!model.complete && model.rows.length < Math.min(model.wanted, model.total) * 0.9) scheduleWindow(100);
  renderSummary();
  renderTable();
  renderTimeline();
  scheduleEgress();
  const touched = message.rows.some((row) => row.id === model.selected) || message.removed.includes(model.selected);
  if (touched) scheduleDetail();
}

let windowTimer = null;
function scheduleWindow(delay) { clearTimeout(windowTimer); windowTimer = setTimeout(loadWindow, delay); }

async function fetchWindow(offset, limit) {
  // one answer of /api/board for the view, and the deltas that arrived meanwhile; null when the
  // view changed or the fetch failed
  if (model.fetching) { model.again = true; return null; }
  const asked = viewQuery(0, 0);
  model.fetching = [];
  try {
    const message = await getJSON(`/api/board?${viewQuery(offset, limit)}`);
    return asked === viewQuery(0, 0) ? { message, missed: model.fetching } : null;
  } catch (error) {
    $("more-text").textContent = error.message;
    return null;
  } finally {
    model.fetching = null;
    if (model.again) { model.again = false; scheduleWindow(0); }
  }
}

async function loadWindow() {
  // the view's first rows, as many as the table wants, fetched again
  const found = await fetchWindow(0, model.wanted);
  if (!found) return;
  takeWindow(found.message);
  for (const delta of found.missed) applyDelta(delta);
  if (model.wanted > PAGE_ROWS) moreIfInSight();
}

async function loadMore() {
  // the next page of the view, asked for as the table is scrolled to its end
  if (model.complete || model.fetching) return;
  const seq = model.seq;
  model.wanted = model.rows.length + PAGE_ROWS;
  const found = await fetchWindow(model.rows.length, PAGE_ROWS);
  if (!found) return;
  const { message, missed } = found;
  if (message.seq !== seq || model.seq !== seq || missed.length) { scheduleWindow(0); return; }
  const fresh = new Set(message.rows.map((row) => row.id));
  model.rows = model.rows.filter((row) => !fresh.has(row.id)).concat(message.rows);
  model.total = message.total;
  model.complete = message.offset + message.rows.length >= message.total;
  renderTable();
  moreIfInSight();
}

function moreIfInSight() {
  // the end of the table may still be in sight after a page came (a tall window, a short
  // page): the observer says nothing until it leaves sight and comes back, so ask again
  requestAnimationFrame(() => {
    const wrap = $("tasks-wrap").getBoundingClientRect(), more = $("more");
    if (!more.hidden && more.getBoundingClientRect().top < wrap.bottom + 200) loadMore();
  });
}

function changeView() {
  model.wanted = PAGE_ROWS;
  $("tasks-wrap").scrollTop = 0;
  scheduleWindow(model.search ? 150 : 0);
}

// --- summary ---------------------------------------------------------------------------------

function renderSummary() {
  const summary = model.summary || { counts: {}, total_cost_usd: 0 };
  $("root").textContent = summary.root || "";
  $("root").title = summary.root || "";
  const banner = $("banner");
  banner.hidden = !summary.root_problem;
  banner.textContent = summary.root_problem || "";
  const counts = $("counts");
  counts.replaceChildren(
    ...STATES.filter((state) => summary.counts[state] || model.filter === state).map((state) =>
      h("button", {
        class: `chip s-${state}`, "aria-pressed": String(model.filter === state), title: `show only ${state} tasks`,
        onclick: () => { model.filter = model.filter === state ? null : state; renderSummary(); changeView(); },
      }, h("span", { class: "dot" }), h("span", { class: "n", text: summary.counts[state] || 0 }), state)),
  );
  // the tab's title says what needs looking at, for a page kept open in the background
  const running = summary.counts.running || 0, failed = (summary.counts.failed || 0) + (summary.counts.timeout || 0) + (summary.counts.lost || 0);
  document.title = `${[running && `${running} running`, failed && `${failed} failed`].filter(Boolean).join(", ") || "idle"} · claude-orchestrator`;
  $("total-cost").textContent = money(summary.total_cost_usd || 0);
  const fleet = summary.fleet_budget;
  $("budget").hidden = !fleet;
  if (fleet) {
    const used = fleet.usd > 0 ? Math.min(1, fleet.spent_usd / fleet.usd) : 0;
    const fill = $("budget-fill");
    fill.style.width = `${(used * 100).toFixed(1)}%`;
    fill.className = `budget-fill${used >= 1 ? " over" : used > 0.8 ? " warn" : ""}`;
    $("budget-text").textContent = `${money(fleet.spent_usd)} of ${money(fleet.usd)} budget`;
  }
  const problems = summary.problems || [];
  $("problems-card").hidden = problems.length === 0;
  $("problems").replaceChildren(...problems.map((problem) => h("li", { text: problem.error })));
  $("task-count").textContent = summary.tasks ? String(summary.tasks) : "";
}

// --- the table -------------------------------------------------------------------------------

function roundNote(row) {
  // rounds (run, check, repair, resolve) and the check of the task's branch, as text
  const parts = [];
  if (row.round && row.round !== "run 1") parts.push(row.round);
  if (row.check) parts.push(`check ${row.check.split(" ")[0]}`);
  return parts.length ? ` · ${parts.join(" · ")}` : "";
}

function rowElement(row) {
  const tries = row.max_attempts ? `${row.attempt}/${row.max_attempts}` : String(row.attempt || "");
  const changes = row.files_changed.length
    ? [h("span", { class: "plus", text: `+${row.insertions}` }), " ", h("span", { class: "minus", text: `−${row.deletions}` }), ` · ${row.files_changed.length}f`]
    : [];
  return h("tr", { data: { id: row.id }, class: row.id === model.selected ? "selected" : "", onclick: () => select(row.id) },
    h("td", {}, stateBadge(row.state)),
    h("td", { class: "id", text: row.id + roundNote(row), title: (row.rounds || []).map((r) => `${r.number} ${r.kind}`).join(", ") }),
    row.error || row.budget_error || row.problems.length
      ? h("td", { class: `prompt why s-${row.state}`, text: (row.error || row.budget_error || row.problems[0]).split("\n")[0], title: `${row.prompt || ""}\n\n${row.error || row.budget_error || row.problems[0]}` })
      : h("td", { class: "prompt", text: (row.prompt || "").split("\n")[0], title: row.prompt || "" }),
    h("td", { class: "num priority", text: String(row.priority || 0) }),
    h("td", { class: "num", text: tries }),
    h("td", { class: "num time", text: duration(rowTime(row)) }),
    h("td", { class: "num" }, ...changes),
    h("td", { class: "num", text: money(row.cost_usd) }),
  );
}

const drawn = new Map(); // id -> { row, tr }: a row unchanged keeps its element

function renderTable() {
  const body = $("task-rows");
  const wanted = model.rows.map((row) => {
    const before = drawn.get(row.id);
    if (before && before.row === row) return before.tr;
    const tr = rowElement(row);
    if (before && before.row.state !== row.state) tr.classList.add("flash");
    drawn.set(row.id, { row, tr });
    return tr;
  });
  // move only what moved: a table scrolled far down stays where it is
  let cursor = body.firstChild;
  for (const tr of wanted) {
    if (tr === cursor) cursor = cursor.nextSibling;
    else body.insertBefore(tr, cursor);
  }
  while (cursor) { const next = cursor.nextSibling; cursor.remove(); cursor = next; }
  if (drawn.size > wanted.length) {
    const held = new Set(model.rows.map((row) => row.id));
    for (const id of drawn.keys()) if (!held.has(id)) drawn.delete(id);
  }
  const tasks = (model.summary && model.summary.tasks) || 0;
  $("no-tasks").hidden = tasks > 0;
  $("no-match").hidden = tasks === 0 || model.rows.length > 0;
  const more = $("more");
  more.hidden = model.complete || model.rows.length === 0;
  $("more-text").textContent = `${model.rows.length.toLocaleString()} of ${model.total.toLocaleString()} shown`;
}

function renderFilters() {
  $("search").addEventListener("input", (event) => {
    const search = event.target.value.trim();
    if (search === model.search) return;
    model.search = search;
    changeView();
  });
  $("more-button").addEventListener("click", loadMore);
  // the next page is fetched as the end of the table comes into sight
  new IntersectionObserver((entries) => { if (entries.some((entry) => entry.isIntersecting)) loadMore(); },
    { root: $("tasks-wrap"), rootMargin: "200px" }).observe($("more"));
}

// --- the timeline -----------------------------------------------------------------------------

function renderTimeline() {
  const box = $("timeline");
  const shown = model.lanes.slice().reverse();
  $("timeline-hint").textContent = !shown.length ? ""
    : model.lanesComplete ? `${shown.length} tasks that ran` : `the latest ${shown.length} tasks that ran`;
  if (!shown.length) {
    box.replaceChildren(h("p", { class: "empty", text: "Attempts appear here as workers claim tasks: one bar per attempt, coloured by how it ended." }));
    return;
  }
  const now = Date.now();
  let start = Infinity, end = 0;
  for (const row of shown) for (const a of row.attempts) {
    if (!a.started_at) continue;
    start = Math.min(start, ms(a.started_at));
    end = Math.max(end, a.ended_at ? ms(a.ended_at) : now);
  }
  if (shown.some((row) => row.state === "running")) end = Math.max(end, now);
  const span = Math.max(end - start, 5000);
  start -= span * 0.02; end += span * 0.03;
  const width = Math.max(box.clientWidth, 400), label = 150, laneH = 22, top = 22;
  const height = top + shown.length * laneH + 6;
  const x = (t) => label + ((t - start) / (end - start)) * (width - label - 10);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "timeline of attempts" });
  for (const tick of ticks(start, end, 7)) {
    if (x(tick) > width - 28) continue; // its label would be cut off at the edge
    svg.append(s("line", { class: "grid", x1: x(tick), x2: x(tick), y1: top - 4, y2: height }));
    svg.append(s("text", { class: "tick", x: x(tick), y: 12, "text-anchor": "middle", text: clock(new Date(tick).toISOString()) }));
  }
  shown.forEach((row, index) => {
    const y = top + index * laneH;
    const selected = row.id === model.selected ? " selected" : "";
    svg.append(s("rect", { class: `lane${index % 2 ? " alt" : ""}${selected}`, x: 0, y, width, height: laneH }));
    svg.append(s("text", { class: `lane-label${selected}`, x: 8, y: y + 15, text: row.id.length > 20 ? `${row.id.slice(0, 19)}…` : row.id, onclick: () => select(row.id) }, s("title", { text: row.id })));
    for (const a of row.attempts) {
      if (!a.started_at) continue;
      const x0 = x(ms(a.started_at)), x1 = x(a.ended_at ? ms(a.ended_at) : now);
      const outcome = a.outcome || "unknown";
      const bar = s("rect", {
        class: `bar s-${outcome}${outcome === "running" ? " running" : ""}`, x: x0, y: y + 4, width: Math.max(5, x1 - x0), height: laneH - 8,
        onclick: () => select(row.id),
      }, s("title", { text: attemptTitle(row, a) }));
      svg.append(bar);
    }
  });
  if (end >= now) svg.append(s("line", { class: "now", x1: x(now), x2: x(now), y1: top - 4, y2: height }));
  box.replaceChildren(svg);
}

function attemptTitle(row, a) {
  const took = a.ended_at ? duration((ms(a.ended_at) - ms(a.started_at)) / 1000) : `${duration((Date.now() - ms(a.started_at)) / 1000)} so far`;
  return [`${row.id} · attempt ${a.attempt}: ${a.outcome}`, `${clock(a.started_at)} → ${a.ended_at ? clock(a.ended_at) : "now"} (${took})`,
    a.worker ? `worker ${a.worker}` : "", a.cost_usd ? `cost ${money(a.cost_usd)}` : "", a.error || ""].filter(Boolean).join("\n");
}

function ticks(start, end, count) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400].map((s) => s * 1000);
  const step = steps.find((size) => (end - start) / size <= count) || steps[steps.length - 1];
  const out = [];
  for (let t = Math.ceil(start / step) * step; t <= end; t += step) out.push(t);
  return out;
}

function renderLegend() {
  $("legend").replaceChildren(...["running", "success", "failed", "timeout", "cancelled", "lost"].map((state) =>
    h("span", {}, h("i", { class: `s-${state}` }), state)));
}

// --- one task ----------------------------------------------------------------------------------

const detail = { data: null, tab: "log", log: null, logSource: null, patch: null, timer: null, request: 0 };

function select(id) {
  if (location.hash !== `#task=${encodeURIComponent(id)}`) history.replaceState(null, "", `#task=${encodeURIComponent(id)}`);
  if (model.selected !== id) {
    model.selected = id;
    detail.patch = null;
    detail.data = null;
    openLog(id);
  }
  for (const tr of $("task-rows").children) tr.classList.toggle("selected", tr.dataset.id === id);
  renderTimeline();
  loadDetail();
}

function scheduleDetail() {
  clearTimeout(detail.timer);
  detail.timer = setTimeout(loadDetail, 120);
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  let body;
  try { body = await response.json(); } catch { body = { error: `The dashboard answered ${response.status} without JSON.` }; }
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

async function loadDetail() {
  const id = model.selected;
  if (!id) return;
  const request = ++detail.request;
  try {
    const data = await getJSON(`/api/tasks/${encodeURIComponent(id)}`);
    if (request !== detail.request) return;
    if (detail.data && detail.data.patch_bytes !== data.patch_bytes) detail.patch = null;
    detail.data = data;
    renderDetail();
  } catch (error) {
    if (request !== detail.request) return;
    detail.data = null;
    $("detail").replaceChildren(h("p", { class: "notice bad", text: error.message }));
  }
}

function meta(label, value, title) {
  return h("div", {}, h("span", { class: "label", text: label }), h("span", { class: "value", text: value || "—", title: title || value || "" }));
}

function renderDetail() {
  const d = detail.data;
  const spans = d.attempts || [];
  const last = spans[spans.length - 1];
  const started = last && last.started_at;
  const took = d.duration_s ?? (d.state === "running" && started ? (Date.now() - ms(started)) / 1000 : null);
  const tabs = [["log", "Log"], ["diff", "Diff", d.files_changed.length || null], ["output", "Output"], ["attempts", "Attempts", spans.length || null], ["egress", "Egress", d.egress.length || null]];
  const card = $("detail");
  // the open pane stays when the same task is shown again (a heartbeat, a log line): a reader's
  // scroll position and text selection in the log or the diff survive the update
  const kept = card.dataset.id === d.id && card.dataset.tab === detail.tab ? $("pane") : null;
  const pane = kept || h("div", { class: "pane", id: "pane" });
  // moving an element out of the page and back resets its scroll: remember it
  const scrolled = kept ? [pane.scrollTop, $("log") ? $("log").scrollTop : 0] : null;
  card.replaceChildren(...[
    h("div", { class: "detail-head" }, h("h3", { text: d.id }), h("span", { class: `badge s-${d.state}`, text: d.state }),
      d.cancel_requested ? h("span", { class: "badge s-cancelled", text: "cancel requested" }) : null),
    h("div", { class: "prompt-text", text: d.prompt || (d.problems[0] || "") }),
    h("div", { class: "meta" },
      meta("attempt", d.max_attempts ? `${d.attempt} of ${d.max_attempts}` : String(d.attempt)),
      meta("worker", d.worker),
      meta(d.state === "running" ? "running for" : "took", duration(took), started ? `started ${clock(started)}` : ""),
      meta("cost", money(d.cost_usd) + (d.requests ? ` · ${d.requests} req` : ""), d.cost_source ? `from the ${d.cost_source}` : ""),
      meta("branch", d.branch),
      meta("profile", d.profile || "default"),
      meta("agent", d.agent),
      meta(d.state === "running" ? "phase" : "created", d.state === "running" ? (d.phase || "") : (d.created_at ? `${ago(d.created_at)}` : ""), d.status_message || ""),
    ),
    d.error || d.budget_error ? h("div", { class: "error-box", text: d.error || d.budget_error }) : null,
    ...d.problems.map((problem) => h("div", { class: "error-box", text: problem })),
    d.files_changed.length ? h("ul", { class: "files", "aria-label": "files changed" }, ...d.files_changed.map((file) => h("li", { text: file }))) : null,
    h("div", { class: "tabs", role: "tablist" }, ...tabs.map(([key, label, n]) =>
      h("button", { class: "tab", role: "tab", "aria-selected": String(detail.tab === key), data: { tab: key }, onclick: () => { detail.tab = key; renderDetail(); } },
        label, n ? h("span", { class: "n", text: n }) : null))),
    pane,
  ].filter(Boolean));
  card.dataset.id = d.id;
  card.dataset.tab = detail.tab;
  if (!kept) renderPane();
  else if (detail.tab === "log") $("log-bar").replaceWith(logBar());
  else if (detail.tab !== "diff" || !detail.patch) renderPane();
  if (kept) {
    pane.scrollTop = scrolled[0];
    const log = $("log");
    if (log) log.scrollTop = detail.log && detail.log.follow ? log.scrollHeight : scrolled[1];
  }
}

function renderPane() {
  const pane = $("pane");
  if (!pane || !detail.data) return;
  const d = detail.data;
  pane.classList.toggle("log-pane", detail.tab === "log");
  if (detail.tab === "log") {
    pane.replaceChildren(logView());
    const log = $("log");
    if (detail.log.follow) log.scrollTop = log.scrollHeight;
  }
  else if (detail.tab === "diff") renderDiffPane(pane);
  else if (detail.tab === "output") pane.replaceChildren(d.output ? h("pre", { class: "output", text: d.output }) : h("p", { class: "notice", text: d.result ? "The attempt gave no final text." : "No result yet: the final text appears when the attempt ends." }));
  else if (detail.tab === "attempts") pane.replaceChildren(attemptsTable(d));
  else if (detail.tab === "egress") pane.replaceChildren(d.egress.length ? egressTable(d.egress, false) : h("p", { class: "notice", text: "This task asked for no outbound connection." }));
}

// --- the log ---------------------------------------------------------------------------------

function openLog(id) {
  if (detail.logSource) detail.logSource.close();
  detail.log = { id, text: "", truncated: false, live: false, follow: true };
  const source = new EventSource(`/api/tasks/${encodeURIComponent(id)}/log/events`);
  detail.logSource = source;
  source.addEventListener("log", (event) => {
    const data = JSON.parse(event.data);
    detail.log.text = data.text; detail.log.truncated = data.truncated; detail.log.live = true;
    refreshLog(true);
  });
  source.addEventListener("append", (event) => {
    detail.log.text += JSON.parse(event.data).text;
    if (detail.log.text.length > 2_000_000) { detail.log.text = detail.log.text.slice(-1_500_000); detail.log.truncated = true; }
    refreshLog(false);
  });
  source.addEventListener("error", () => { if (detail.log) { detail.log.live = false; refreshLog(false); } });
  source.addEventListener("open", () => { if (detail.log) detail.log.live = true; });
}

function logBar() {
  const log = detail.log;
  const follow = h("input", { type: "checkbox", checked: log.follow, onchange: (event) => { log.follow = event.target.checked; } });
  const running = detail.data && detail.data.state === "running";
  return h("div", { class: "log-bar", id: "log-bar" },
    running && log.live ? h("span", { class: "live-tag", text: "following" }) : h("span", { text: log.text ? `${log.text.length.toLocaleString()} characters` : "" }),
    log.truncated ? h("span", { text: "(earlier output left out)" }) : null,
    h("label", {}, follow, "follow the end"));
}

function logView() {
  const running = detail.data && detail.data.state === "running";
  return h("div", { class: "log-view" }, logBar(),
    h("pre", { class: "log", id: "log", text: detail.log.text || (running ? "Waiting for the agent's first output…" : "No output logged.") }));
}

function refreshLog(whole) {
  if (detail.tab !== "log" || !detail.data) return;
  const pre = $("log");
  if (!pre || whole) { renderPane(); }
  const node = $("log");
  if (!node) return;
  const atEnd = node.scrollHeight - node.scrollTop - node.clientHeight < 40;
  node.textContent = detail.log.text || node.textContent;
  if (detail.log.follow || atEnd) node.scrollTop = node.scrollHeight;
}

// --- the diff ----------------------------------------------------------------------------------

async function renderDiffPane(pane) {
  const id = detail.data.id;
  if (!detail.data.patch_bytes) {
    pane.replaceChildren(h("p", { class: "notice", text: detail.data.state === "running" ? "The patch is saved when the attempt commits." : "No patch: the task changed nothing." }));
    return;
  }
  if (!detail.patch || detail.patch.id !== id) {
    pane.replaceChildren(h("p", { class: "notice", text: "Loading the patch…" }));
    try { detail.patch = await getJSON(`/api/tasks/${encodeURIComponent(id)}/patch`); } catch (error) {
      pane.replaceChildren(h("p", { class: "notice bad", text: error.message })); return;
    }
    if (detail.tab !== "diff" || model.selected !== id) return;
  }
  const target = $("pane");
  if (!target) return;
  target.replaceChildren(detail.patch.patch ? diffView(detail.patch.patch) : h("p", { class: "notice", text: detail.patch.note }));
}

function diffView(patch) {
  const files = [];
  let current = null;
  for (const line of patch.split("\n")) {
    if (line.startsWith("diff --git ")) {
      current = { name: line.replace(/^diff --git a\/(.*?) b\/.*$/, "$1"), lines: [], add: 0, del: 0 };
      files.push(current);
    }
    if (current) current.lines.push(line);
  }
  if (!files.length) return h("pre", { class: "output", text: patch });
  const MAX = 4000;
  let budget = MAX;
  return h("div", {}, ...files.map((file) => {
    const rows = [];
    let oldNo = 0, newNo = 0, inHunk = false;
    for (const line of file.lines) {
      if (budget-- <= 0) break;
      let cls = "dmeta", a = "", b = "";
      const hunk = line.match(/^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/);
      if (hunk) { oldNo = +hunk[1]; newNo = +hunk[2]; inHunk = true; cls = "hunk"; }
      else if (inHunk && line.startsWith("+")) { cls = "add"; b = newNo++; file.add++; }
      else if (inHunk && line.startsWith("-")) { cls = "del"; a = oldNo++; file.del++; }
      else if (inHunk && line.startsWith(" ")) { cls = "ctx"; a = oldNo++; b = newNo++; }
      else if (line.startsWith("diff --git")) { inHunk = false; }
      rows.push(h("div", { class: `diff-line ${cls}` }, h("span", { class: "ln", text: a }), h("span", { class: "ln", text: b }), h("span", { class: "code", text: line || " " })));
    }
    return h("details", { class: "diff-file", open: true },
      h("summary", {}, h("span", { text: file.name }), h("span", { class: "stat" }, h("span", { class: "plus", text: `+${file.add}` }), " ", h("span", { class: "minus", text: `−${file.del}` }))),
      h("div", { class: "diff-lines" }, ...rows));
  }), budget <= 0 ? h("p", { class: "notice", text: `Only the first ${MAX} lines are shown.` }) : null);
}

// --- attempts and egress --------------------------------------------------------------------------

function attemptsTable(d) {
  if (!d.attempts.length) return h("p", { class: "notice", text: "No attempt yet: the task waits for a worker." });
  return h("table", { class: "attempts" },
    h("thead", {}, h("tr", {}, ...["#", "outcome", "worker", "started", "took", "cost", "error"].map((t) => h("th", { text: t })))),
    h("tbody", {}, ...d.attempts.map((a) => h("tr", {},
      h("td", { text: a.attempt }), h("td", {}, stateBadge(a.outcome)), h("td", { class: "mono", text: a.worker || "" }),
      h("td", { text: clock(a.started_at) }),
      h("td", { class: "num", text: a.started_at ? duration(((a.ended_at ? ms(a.ended_at) : Date.now()) - ms(a.started_at)) / 1000) : "" }),
      h("td", { class: "num", text: money(a.cost_usd) }), h("td", { class: "reason", text: a.error || "" })))));
}

function egressRow(entry, withTask) {
  return h("tr", {},
    h("td", { text: `${new Date(entry.at).toLocaleDateString()} ${clock(entry.at)}` }),
    withTask ? h("td", { class: "mono", text: entry.task_id, onclick: () => select(entry.task_id) }) : null,
    h("td", { text: `#${entry.attempt}` }), h("td", { text: entry.method }),
    h("td", { class: "host", text: `${entry.host}:${entry.port}` }),
    h("td", { class: entry.allowed ? "verdict-allowed" : "verdict-refused", text: entry.allowed ? "allowed" : "refused" }),
    h("td", { class: "reason", text: entry.reason || "" }));
}

function egressTable(entries, withTask) {
  const heads = ["time", withTask ? "task" : null, "try", "method", "host:port", "verdict", "reason"].filter(Boolean);
  return h("table", { class: "egress" }, h("thead", {}, h("tr", {}, ...heads.map((t) => h("th", { text: t })))),
    h("tbody", {}, ...entries.slice().reverse().map((entry) => egressRow(entry, withTask))));
}

let egressTimer = null;
function scheduleEgress() { clearTimeout(egressTimer); egressTimer = setTimeout(loadEgress, 800); }

async function loadEgress() {
  try {
    const data = await getJSON("/api/egress");
    $("egress-rows").replaceChildren(...data.entries.slice().reverse().map((entry) => egressRow(entry, true)));
    $("no-egress").hidden = data.total > 0;
    $("egress").hidden = data.total === 0;
    $("egress-hint").textContent = data.total ? `${data.total} connections, ${data.refused} refused` : "";
  } catch (error) {
    $("egress-hint").textContent = error.message;
  }
}

// --- start ------------------------------------------------------------------------------------------

// --- the project served, and the others' dashboards (issue 17) -----------------------------

async function loadProject() {
  let info;
  try { info = await getJSON("/api/project"); } catch { return; }
  const project = $("project");
  project.hidden = !info.project;
  project.textContent = info.project || "";
  if (info.project) document.title = `${info.project} · claude-orchestrator`;
  const links = info.links.filter((link) => /^https?:\/\//.test(link.url));
  $("projects").hidden = links.length === 0;
  $("projects").replaceChildren(...links.map((link) =>
    h("a", { href: link.url, class: "project-link", rel: "noopener noreferrer", text: link.name })));
}

function renderAll() {
  renderSummary();
  renderTimeline(); // first: it measures the page, which is cheap before the table is filled
  renderTable();
  if (model.selected) scheduleDetail();
}

function fromHash() {
  const match = location.hash.match(/^#task=(.+)$/);
  if (match) select(decodeURIComponent(match[1]));
}

function tick() {
  // times that move by themselves: the running tasks' clocks and the timeline's "now"
  for (const row of model.rows) {
    if (row.state !== "running") continue;
    const shown = drawn.get(row.id);
    if (shown) shown.tr.querySelector(".time").textContent = duration(rowTime(row));
  }
  if (model.lanes.some((row) => row.state === "running")) renderTimeline();
}

renderLegend();
renderFilters();
renderSummary();
loadProject();
connect();
loadEgress();
fromHash();
window.addEventListener("hashchange", fromHash);
window.addEventListener("resize", () => renderTimeline());
setInterval(tick, 1000);
