// The batch list (GET /batches, filtered) and a batch's page (its timeline's JSON: summary,
// chunk outcomes, failed chunks' errors, history), with cancel, resume and retry behind a
// confirmation. Loaded before dashboard.js, whose helpers (el, fill, getJSON, showError, row,
// drawTimeline) it calls; dashboard.js calls refreshBatches() on every poll.
"use strict";

const LIST_LIMIT = 50;
const ACTIONS = {
  cancel: { when: ["queued", "running"], ask: "Cancel batch {id}? Nothing more of it will be published." },
  resume: { when: ["cancelled"], ask: "Resume batch {id} where it stopped?" },
  retry: { when: ["failed"], ask: "Enqueue the failed chunks of batch {id} again, once?" },
};
let pageBatch = null; // the batch whose page is open
let pageReadAt = 0;
let pendingAction = null; // the action waiting for its confirmation

function token() {
  return sessionStorage.getItem("dbos-publishers.token");
}

async function postJSON(path) {
  const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
  const response = await fetch(path, { method: "POST", headers, cache: "no-store" });
  if (response.status === 401) throw new AuthNeeded();
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || `${path}: HTTP ${response.status}`);
  return body;
}

function listQuery() {
  const query = new URLSearchParams({ limit: LIST_LIMIT });
  for (const [name, id] of [["search", "batch-search"], ["publisher", "batch-publisher"], ["state", "batch-state"]]) {
    const value = document.getElementById(id).value.trim();
    if (value) query.set(name, value);
  }
  return query;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function seconds(value) {
  return value === null ? "–" : value < 60 ? `${value.toFixed(1)} s` : `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

function drawList(page) {
  fill("#batch-list tbody", page.batches.map((b) => {
    const line = el("tr", { "data-batch": b.batch_id, class: b.batch_id === pageBatch ? "selected" : "" },
      ...[b.batch_id, b.publisher, b.topic].map((v) => el("td", {}, v)),
      el("td", { class: `state-${b.state}` }, b.state),
      el("td", {}, `${b.published} of ${b.messages}`), el("td", {}, String(b.failed)),
      el("td", {}, when(b.started)), el("td", {}, seconds(b.duration_sec)),
      el("td", {}, b.msg_per_sec === null ? "–" : String(b.msg_per_sec)));
    line.addEventListener("click", () => openPage(b.batch_id).catch(showError));
    return line;
  }));
  document.getElementById("batch-count").textContent =
    `${page.batches.length}${page.next ? "+" : ""} batches`;
}

function fillPublishers(names) {
  const select = document.getElementById("batch-publisher");
  if (select.options.length - 1 === names.length) return;
  select.replaceChildren(el("option", { value: "" }, "every publisher"), ...names.map((n) => el("option", {}, n)));
}

async function refreshBatches(overview) {
  fillPublishers(overview.publishers);
  drawList(await getJSON(`/batches?${listQuery()}`));
  const running = document.getElementById("page-summary").dataset.state === "running";
  if (pageBatch && running && Date.now() - pageReadAt > 10000) await readPage();
}

async function openPage(batchId) {
  pageBatch = batchId;
  pendingAction = null;
  document.getElementById("page-result").textContent = "";
  document.querySelectorAll("#batch-list tbody tr").forEach((tr) =>
    tr.classList.toggle("selected", tr.dataset.batch === batchId));
  await readPage();
}

async function readPage() {
  const data = await getJSON(`/batches/${encodeURIComponent(pageBatch)}/timeline`);
  pageReadAt = Date.now();
  drawPage(data);
  drawTimeline(data);
}

function drawPage(data) {
  const [b, s] = [data.batch, data.summary];
  document.getElementById("batch-page").hidden = false;
  document.getElementById("page-title").textContent = data.batch_id;
  const summary = document.getElementById("page-summary");
  summary.dataset.state = b ? b.state : "";
  summary.textContent = b
    ? `${b.state}: ${b.publisher} → ${b.topic}; ${b.published} of ${b.messages} messages published, ` +
      `${b.failed} failed; started ${when(b.started)}, finished ${when(b.finished)}; ` +
      `duration ${seconds(b.duration_sec)}, ${b.msg_per_sec ?? "–"} msg/s`
    : "not recorded in the application database";
  document.getElementById("page-chunks").textContent =
    `Chunks: ${s.chunks_committed} committed, ${s.chunks_cancelled} cancelled, ` +
    `${s.chunks_pending} pending, ${s.failed_chunks} failed of ${s.chunks}; ` +
    `${s.recoveries} recoveries, ${s.taken_over_workflows} workflows taken over.`;
  fill("#page-errors", failures(data).map((text) => el("li", {}, text)));
  fill("#page-history", data.history.map((e) => el("li", {}, `${when(e.at)}: ${e.event}${e.detail ? ` (${e.detail})` : ""}`)));
  for (const button of document.querySelectorAll("#page-actions button")) {
    button.disabled = !(b && ACTIONS[button.dataset.action].when.includes(b.state));
  }
  document.getElementById("page-confirm").hidden = pendingAction === null;
}

function failures(data) {
  const dead = ["ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"];
  return data.workflows.filter((w) => dead.includes(w.status)).slice(0, 20).map((w) => {
    const failed = w.steps.find((step) => step.error);
    return `${w.workflow_id}: ${w.status}${failed ? `: ${failed.error}` : ""}`;
  });
}

function ask(action) {
  pendingAction = action;
  document.getElementById("page-confirm-text").textContent = ACTIONS[action].ask.replace("{id}", pageBatch);
  document.getElementById("page-confirm").hidden = false;
}

async function act() {
  const [action, batchId] = [pendingAction, pageBatch];
  pendingAction = null;
  document.getElementById("page-confirm").hidden = true;
  const result = document.getElementById("page-result");
  try {
    const done = await postJSON(`/batches/${encodeURIComponent(batchId)}/${action}`);
    result.textContent = `${action}: done; ${done.workflows.length} workflows; state ${done.state}; ${done.published} published`;
    result.className = "";
  } catch (error) {
    if (error instanceof AuthNeeded) throw error;
    result.textContent = `${action} refused: ${error.message}`;
    result.className = "bad";
  }
  await readPage();
}

for (const button of document.querySelectorAll("#page-actions button")) {
  button.addEventListener("click", () => ask(button.dataset.action));
}
document.getElementById("page-confirm-yes").addEventListener("click", () => act().catch(showError));
document.getElementById("page-confirm-no").addEventListener("click", () => {
  pendingAction = null;
  document.getElementById("page-confirm").hidden = true;
});
document.getElementById("batch-filter").addEventListener("submit", (event) => event.preventDefault());
for (const id of ["batch-search", "batch-publisher", "batch-state"]) {
  document.getElementById(id).addEventListener("input", () =>
    getJSON(`/batches?${listQuery()}`).then(drawList).catch(showError));
}
