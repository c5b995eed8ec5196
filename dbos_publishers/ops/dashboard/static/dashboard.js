// The dashboard: reads the service's JSON API every 2 s and draws it. No build step, no
// dependency. With APP_API_TOKEN set, the token is asked for once (or taken from the URL's
// #token= fragment, which never reaches the server) and kept in this tab's sessionStorage.
"use strict";

const TOKEN_KEY = "dbos-publishers.token";
const POLL_MS = 2000;
const KEEP_SAMPLES = 90; // three minutes of throughput
const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16"];
const SVG = "http://www.w3.org/2000/svg";

const samples = []; // {t, counts: {"publisher/topic": n}}
let selected = null; // the batch whose timeline is shown
let shownTimeline = ""; // what it was drawn from, to redraw only on change
let timelineAt = 0; // when it was read: a running batch's timeline is re-read every 10 s at most
const TIMELINE_MS = 10000; // (one read per workflow: a big batch's timeline is not cheap)

class AuthNeeded extends Error {}

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function fill(selector, nodes) {
  document.querySelector(selector).replaceChildren(...nodes);
}

function takeTokenFromFragment() {
  const match = location.hash.match(/(?:^#|&)token=([^&]*)/);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

async function getJSON(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) throw new AuthNeeded();
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function showAuth(message) {
  document.getElementById("auth").hidden = false;
  document.getElementById("panels").hidden = true;
  document.getElementById("invariant").textContent = "Waiting for the API token.";
  document.getElementById("auth-error").textContent = message;
}

function drawInvariant(invariant) {
  const banner = document.getElementById("invariant");
  banner.textContent = invariant.sentence;
  banner.className = invariant.consistent ? "banner good" : "banner bad";
}

function rates(key) {
  const points = [];
  for (let i = 1; i < samples.length; i++) {
    const [a, b] = [samples[i - 1], samples[i]];
    if (key in a.counts && key in b.counts && b.t > a.t) {
      points.push([b.t, (b.counts[key] - a.counts[key]) / (b.t - a.t)]);
    }
  }
  return points;
}

function drawThroughput(keys) {
  const [width, height, pad] = [900, 220, 30];
  const series = keys.map((key) => [key, rates(key)]);
  const peak = Math.max(1, ...series.flatMap(([, pts]) => pts.map(([, r]) => r)));
  const now = samples.length ? samples[samples.length - 1].t : 0;
  const span = POLL_MS / 1000 * KEEP_SAMPLES;
  const x = (t) => pad + (width - pad) * (1 - (now - t) / span);
  const y = (r) => height - pad - (height - 2 * pad) * (r / peak);
  const nodes = [
    el("svg:line", { x1: pad, y1: height - pad, x2: width, y2: height - pad, class: "axis" }),
    el("svg:text", { x: 2, y: pad, class: "tick" }, `${Math.round(peak)}/s`),
    el("svg:text", { x: 2, y: height - pad, class: "tick" }, "0"),
    el("svg:text", { x: pad, y: height - 8, class: "tick" }, `−${span / 60} min`),
    el("svg:text", { x: width - 30, y: height - 8, class: "tick" }, "now"),
  ];
  series.forEach(([key, pts], i) => {
    if (pts.length) {
      const line = pts.map(([t, r]) => `${x(t).toFixed(1)},${y(r).toFixed(1)}`).join(" ");
      nodes.push(el("svg:polyline", { points: line, stroke: COLORS[i % COLORS.length], class: "series" }));
    }
  });
  fill("#throughput", nodes);
  fill("#legend", series.map(([key, pts], i) => el("li", { style: `--c:${COLORS[i % COLORS.length]}` },
    `${key}: ${pts.length ? Math.round(pts[pts.length - 1][1]) : "–"} msg/s`)));
}

function row(cells) {
  return el("tr", {}, ...cells.map((cell) => el("td", {}, String(cell))));
}

function drawBatches(batches) {
  if (!selected && batches.length) selected = batches[0].batch_id;
  fill("#batches", batches.map((b) => {
    const failed = b.failed_chunks ? el("span", { class: "bad" }, ` ${b.failed_chunks} failed chunks`) : "";
    const item = el("li", { class: b.batch_id === selected ? "batch selected" : "batch", "data-batch": b.batch_id },
      el("div", { class: "batch-head" },
        el("strong", {}, b.batch_id), ` ${b.publisher} → ${b.topic} · ${b.status || "planned"}`, failed),
      el("div", { class: "bar" }, el("div", { class: "fill", style: `width:${b.percent}%` })),
      el("div", { class: "muted" }, `${b.published} of ${b.messages} messages (${b.percent}%), ${b.chunks} chunks`));
    item.addEventListener("click", () => {
      selected = b.batch_id;
      shownTimeline = "";
      document.querySelectorAll(".batch").forEach((li) => li.classList.toggle("selected", li === item));
      readTimeline(b).catch(showError);
    });
    return item;
  }));
  if (!batches.length) fill("#batches", [el("li", { class: "muted" }, "No batch yet.")]);
}

function drawTimeline(data) {
  document.getElementById("timeline-title").textContent = `batch ${data.batch_id}`;
  document.getElementById("timeline-summary").textContent =
    `${data.workflows.length} workflows; ${data.replayed_steps} steps replayed from checkpoints ` +
    `after a restart; ${data.taken_over_workflows} workflows taken over from a gone worker.`;
  const times = data.workflows.flatMap((w) => [w.created_at, w.completed_at]).filter(Boolean).map(Date.parse);
  const [start, end] = [Math.min(...times), Math.max(Date.now(), ...times)];
  const [width, rowHeight, label] = [900, 14, 190];
  const x = (iso) => label + (width - label - 10) * ((iso ? Date.parse(iso) : end) - start) / Math.max(1, end - start);
  const nodes = [];
  data.workflows.forEach((w, i) => {
    const top = i * rowHeight;
    const name = w.workflow_id.replace(`batch-${data.batch_id}`, "batch").replace("batch/", "");
    nodes.push(el("svg:text", { x: 0, y: top + 11, class: "tick" }, `${w.taken_over.length ? "↻ " : ""}${name}`));
    const [left, right] = [x(w.created_at), x(w.completed_at)];
    nodes.push(el("svg:rect", { x: left, y: top + 3, width: Math.max(2, right - left), height: rowHeight - 6,
      class: `wf ${w.status.toLowerCase()}` }, el("svg:title", {}, `${w.workflow_id} ${w.status}`)));
    for (const step of w.steps) {
      if (!step.completed_at) continue;
      nodes.push(el("svg:rect", { x: x(step.completed_at) - 1, y: top + 1, width: 3, height: rowHeight - 2,
        class: step.replayed ? "step replayed" : step.error ? "step failed" : "step" },
        el("svg:title", {}, `${step.step_id} ${step.name}${step.replayed ? " (replayed)" : ""}`)));
    }
  });
  const svg = document.getElementById("timeline");
  svg.setAttribute("viewBox", `0 0 ${width} ${data.workflows.length * rowHeight}`);
  svg.setAttribute("height", data.workflows.length * rowHeight);
  svg.replaceChildren(...nodes);
}

function drawWorkers(overview) {
  fill("#workers tbody", overview.workers.map((w) => row([w.executor_id, w.app_version,
    w.state + (w.taken_over_by ? ` (by ${w.taken_over_by})` : ""), `${w.heartbeat_age_sec}s ago`,
    w.in_flight, w.takeovers])));
  document.getElementById("recovered").textContent =
    `This worker recovered ${overview.recovered_at_start} pending workflows at start; ` +
    `${overview.takeovers_total} takeovers of gone workers on this database.`;
  fill("#takeovers", overview.takeovers.map((t) => el("li", {},
    `${new Date(t.claimed_at * 1000).toLocaleTimeString()}: ${t.by_executor_id} took over ` +
    `${t.executor_id} (${t.reason}), ${t.workflows ?? "?"} workflows`)));
  const fired = Object.entries(overview.failpoints_fired);
  fill("#failpoints", fired.length ? fired.map(([name, n]) => el("li", {}, `${name}: ${n}`))
    : [el("li", { class: "muted" }, "none")]);
}

function draw(overview) {
  document.getElementById("auth").hidden = true;
  document.getElementById("panels").hidden = false;
  drawInvariant(overview.invariant);
  const counts = Object.fromEntries(overview.counters.map((c) => [`${c.publisher}/${c.topic}`, c.local_counter]));
  samples.push({ t: Date.now() / 1000, counts });
  if (samples.length > KEEP_SAMPLES) samples.shift();
  drawThroughput(Object.keys(counts).sort());
  fill("#queues tbody", overview.queues.map((q) => row([q.queue, q.pending, q.enqueued])));
  fill("#counters tbody", overview.counters.map((c) => row([c.publisher, c.topic, c.local_counter])));
  drawBatches(overview.batches);
  drawWorkers(overview);
  document.getElementById("updated").textContent =
    `${overview.publishers.length} publishers (${overview.publishers.join(", ")}); ` +
    `${overview.ledger_rows} ledger rows; updated ${new Date().toLocaleTimeString()}`;
  return overview.batches.find((b) => b.batch_id === selected);
}

async function readTimeline(batch) {
  // A new batch or state at once; a running batch's progress every TIMELINE_MS at most.
  const version = `${batch.batch_id}:${batch.status}:${batch.failed_chunks}`;
  const moved = `${version}:${batch.published}` !== shownTimeline;
  if (moved && (!shownTimeline.startsWith(`${version}:`) || Date.now() - timelineAt > TIMELINE_MS)) {
    drawTimeline(await getJSON(`/batches/${encodeURIComponent(batch.batch_id)}/timeline`));
    [shownTimeline, timelineAt] = [`${version}:${batch.published}`, Date.now()];
  }
}

function showError(error) {
  if (error instanceof AuthNeeded) {
    showAuth(sessionStorage.getItem(TOKEN_KEY) ? "That token was refused." : "");
    return false;
  }
  document.getElementById("error").textContent = `Could not read the service: ${error.message}`;
  return true;
}

async function tick() {
  try {
    const overview = await getJSON("/dashboard/overview");
    const batch = draw(overview);
    await refreshBatches(overview); // batches.js: the list, and the open batch's page
    if (batch && !pageBatch) await readTimeline(batch);
    document.getElementById("error").textContent = "";
  } catch (error) {
    return showError(error);
  }
  return true;
}

async function loop() {
  if (await tick()) setTimeout(loop, POLL_MS);
}

document.getElementById("auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("auth-token").value);
  loop();
});
takeTokenFromFragment();
loop();
