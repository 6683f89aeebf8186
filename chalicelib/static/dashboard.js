// The jobs dashboard: no framework, no build step. Every text from the API goes in via textContent.
"use strict";

const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
const RETRYABLE = new Set(["FAILED", "CANCELLED"]);  // POST /jobs/{id}/retry runs them again
const PAGE_SIZE = 15;
const LIST_REFRESH_MS = 15000;
const MAX_IDS = 100;               // GET /jobs?ids= names at most this many
const BACKOFF_FIRST_S = 5;         // after a 429 or 503 the next poll waits this long, doubling...
const BACKOFF_MAX_S = 60;          // ...up to this

const state = {
  key: sessionStorage.getItem("jobs.apiKey") || "",
  cursor: null,          // the page shown starts after this job id (null: newest)
  previous: [],          // cursors of the pages before, for "Newer"
  next: null,
  pollTimer: null,       // the next poll of the visible active jobs (one request for all of them)
  polling: false,        // a poll is in flight
  backoff: 0,            // seconds of the current back-off after a 429 or 503 (0: none)
  latest: new Map(),     // job id -> the newest view of it the API gave
  full: new Map(),       // job id -> its whole view (GET /jobs/{id}, with the result) once it has ended
  deliveries: new Map(), // job id -> its webhook's attempts (GET /jobs/{id}/deliveries), read with the whole view
  selected: null,
  listTimer: null,
  batch: null,           // the batch shown (GET /batches/{id}), polled by its Retry-After while active
  batchTimer: null,
};
const $ = (selector) => document.querySelector(selector);

class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super((body && (body.message || body.code)) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.retryAfter = retryAfter;
  }
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "x-api-key": state.key, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { /* an empty or non-JSON body */ }
  const retryAfter = Number(response.headers.get("Retry-After")) || null;
  if (!response.ok) throw new ApiError(response.status, data, retryAfter);
  return { data, retryAfter, status: response.status };
}

function notice(text, isError = false) {
  const el = $("#notice");
  el.hidden = !text;
  el.textContent = text || "";
  el.classList.toggle("error", isError);
}

function explain(error) {
  if (!(error instanceof ApiError)) return `Cannot reach the API: ${error.message}`;
  if (error.status === 403) return "This API key was refused (403 Forbidden). Check the key and enter it again.";
  if (error.status === 429 && error.code === "ActiveJobLimit") return `Your plan's limit of unfinished jobs is reached (429): ${error.message}`;
  if (error.status === 429) return "Too many requests (429): your usage plan's limit is reached. Updates slow down and resume by themselves.";
  if (error.status === 503) return "The service is unavailable right now (503). It retries by itself shortly.";
  return `${error.status}: ${error.message}`;
}

// --- the key ----------------------------------------------------------------------------------
async function useKey(key) {
  state.key = key;
  sessionStorage.setItem("jobs.apiKey", key);
  stopPolling();
  state.cursor = null;
  state.previous = [];
  try {
    await loadList();
    notice("");
    $("main").hidden = false;
  } catch (error) {
    $("main").hidden = error.status === 403;
    notice(explain(error), true);
  }
}

// --- the submit form, built from the OpenAPI document's payload schemas --------------------------
async function loadTypes() {
  const response = await fetch("openapi.json");
  const doc = await response.json();
  const variants = doc.components.schemas.Submission.oneOf;
  const types = {};
  for (const variant of variants) types[variant.properties.type.enum[0]] = variant.properties.payload;
  const select = $("#job-type");
  for (const name of Object.keys(types).sort()) {
    select.append(new Option(name, name));
    $("#filter-type").append(new Option(name, name));
  }
  for (const status of doc.components.schemas.Job.properties.status.enum) $("#filter-status").append(new Option(status, status));
  select.addEventListener("change", () => renderPayloadFields(types[select.value]));
  renderPayloadFields(types[select.value]);
}

function renderPayloadFields(schema) {
  const box = $("#payload-fields");
  box.replaceChildren();
  const properties = (schema && schema.properties) || {};
  if (Object.keys(properties).length === 0) {
    box.append(field("payload", "payload (JSON)", Object.assign(document.createElement("input"), { value: "{}" })));
    return;
  }
  for (const [name, spec] of Object.entries(properties)) {
    const input = document.createElement("input");
    input.name = name;
    input.type = spec.type === "integer" || spec.type === "number" ? "number" : "text";
    if (spec.minimum !== undefined) input.min = spec.minimum;
    if (spec.maximum !== undefined) input.max = spec.maximum;
    if (spec.default !== undefined) input.value = spec.default;
    input.dataset.kind = spec.type || "string";
    box.append(field(name, name, input, spec.description));
  }
  if (properties.bucket && properties.key) {
    // A type that reads an input object: a local file instead, uploaded first (POST /uploads).
    const file = Object.assign(document.createElement("input"), { type: "file" });
    file.dataset.kind = "file";
    box.append(field("file", "or a local file", file, "uploaded to your own input prefix; fills in bucket and key"));
  }
}

// Uploads go straight to S3 with the presigned POST the API signs (the page's connect-src allows its origin).
async function uploadFile(file) {
  const body = { filename: file.name, bytes: file.size };
  if (file.type) body.contentType = file.type;
  const { data } = await api("POST", "uploads", body);
  const form = new FormData();
  for (const [name, value] of Object.entries(data.fields)) form.append(name, value);
  form.append("file", file);  // S3 wants the file last
  const response = await fetch(data.uploadUrl, { method: "POST", body: form });
  if (!response.ok) throw new Error(`the upload was refused (${response.status})`);
  return data;
}

function field(name, label, input, help) {
  const wrap = document.createElement("div");
  wrap.className = "field";
  const caption = document.createElement("label");
  caption.textContent = label;
  input.id = `payload-${name}`;
  input.name = name;
  caption.htmlFor = input.id;
  wrap.append(caption, input);
  if (help) wrap.append(Object.assign(document.createElement("small"), { textContent: help }));
  return wrap;
}

function payloadFromForm() {
  const inputs = [...document.querySelectorAll("#payload-fields input")];
  if (inputs.length === 1 && inputs[0].name === "payload") return JSON.parse(inputs[0].value || "{}");
  const payload = {};
  for (const input of inputs) {
    if (input.value === "" || input.dataset.kind === "file") continue;
    payload[input.name] = input.dataset.kind === "integer" || input.dataset.kind === "number" ? Number(input.value) : input.value;
  }
  return payload;
}

async function submitJob(event) {
  event.preventDefault();
  try {
    const body = { type: $("#job-type").value, payload: payloadFromForm(), priority: $("#job-priority").value };
    const file = $("#payload-file");
    if (file && file.files.length) {
      notice(`Uploading ${file.files[0].name}...`);
      const upload = await uploadFile(file.files[0]);
      Object.assign(body.payload, { bucket: upload.bucket, key: upload.key });
    }
    const { data } = await api("POST", "jobs", body);
    notice(`Submitted job ${data.jobId}.`);
    state.cursor = null;
    state.previous = [];
    await loadList();  // the new job is in the first page: the next poll takes it along
  } catch (error) {
    notice(error instanceof SyntaxError ? `The payload is not JSON: ${error.message}` : explain(error), true);
  }
}

// --- the table -----------------------------------------------------------------------------------
// "Plan basic: 3 of 50 unfinished jobs (1 pending, 2 running), at most 2 running at once" (GET /limits).
async function loadLimits() {
  const { data } = await api("GET", "limits");
  const usage = data.usage;
  const held = usage.heldJobs ? ` of which ${usage.heldJobs} held for a free slot` : "";
  const scheduled =
    (usage.scheduledJobs ? `${usage.scheduledJobs} scheduled, ` : "") +
    (usage.waitingJobs ? `${usage.waitingJobs} waiting, ` : "");
  const counts = `${scheduled}${usage.pendingJobs} pending${held}, ${usage.runningJobs} running`;
  $("#limits").textContent = data.limits
    ? `Client ${data.client}, plan ${data.plan}: ${usage.activeJobs} of ${data.limits.maxActiveJobs} unfinished jobs ` +
      `(${counts}), at most ${data.limits.maxRunningJobs} running at once.`
    : `Client ${data.client}: ${usage.activeJobs} unfinished jobs (${counts}).`;
  $("#limits").hidden = false;
}

async function loadList() {
  loadLimits().catch(() => { $("#limits").hidden = true; });  // a side line: the table does not wait for it
  loadSchedules().catch(() => {});  // refreshed with the list; its errors show on the next action
  const query = new URLSearchParams({ limit: PAGE_SIZE });
  if ($("#filter-status").value) query.set("status", $("#filter-status").value);
  if ($("#filter-type").value) query.set("type", $("#filter-type").value);
  if (state.cursor) query.set("cursor", state.cursor);
  const { data } = await api("GET", `jobs?${query}`);
  state.next = data.nextCursor;
  $("#older").disabled = !state.next;
  $("#newer").disabled = state.previous.length === 0;
  $("#empty").hidden = data.jobs.length > 0;
  const rows = $("#job-rows");
  rows.replaceChildren(...data.jobs.map(row));
  startPolling();
  scheduleList(LIST_REFRESH_MS);
}

// The list refreshes itself every 15 s, and keeps doing so (more slowly while backing off) after an error.
function scheduleList(ms) {
  clearTimeout(state.listTimer);
  state.listTimer = setTimeout(() => loadList().catch((error) => {
    notice(explain(error), true);
    scheduleList(Math.max(LIST_REFRESH_MS, state.backoff * 1000));
  }), ms);
}

function row(job) {
  const tr = document.createElement("tr");
  tr.dataset.id = job.jobId;
  const cells = ["col-id", "col-type", "col-status", "col-progress", "col-message wide", "col-created wide", "col-actions"].map((cls) => {
    const td = document.createElement("td");
    td.className = cls;
    tr.append(td);
    return td;
  });
  const link = Object.assign(document.createElement("a"), { href: `#${job.jobId}`, textContent: job.jobId.slice(-8), title: job.jobId });
  link.addEventListener("click", (event) => { event.preventDefault(); showDetail(job.jobId); });
  cells[0].append(link);
  cells[1].textContent = job.type;
  if (job.priority === "high") cells[1].append(" ", Object.assign(document.createElement("span"), { className: "priority", textContent: "high" }));
  cells[5].textContent = new Date(job.createdAt).toLocaleString();
  update(tr, job);
  return tr;
}

function update(tr, job) {
  state.latest.set(job.jobId, job);
  const [, , status, progress, message, , actions] = tr.children;
  status.replaceChildren(Object.assign(document.createElement("span"), { className: `status ${job.status}`, textContent: job.status + (job.stalled ? " (stalled)" : "") }));
  const bar = document.createElement("div");
  bar.className = `bar ${job.status}`;
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuenow", job.progress);
  const fill = document.createElement("span");
  fill.style.width = `${job.progress}%`;  // CSSOM, allowed by the page's Content-Security-Policy
  bar.append(fill);
  progress.replaceChildren(Object.assign(document.createElement("div"), { className: "progress" }));
  progress.firstChild.append(bar, Object.assign(document.createElement("span"), { className: "pct", textContent: `${job.progress}%` }));
  message.textContent = job.error || job.message || "";
  actions.replaceChildren();
  if (!TERMINAL.has(job.status) && !job.cancelRequested) {
    const button = Object.assign(document.createElement("button"), { type: "button", className: "cancel", textContent: "Cancel" });
    button.addEventListener("click", () => cancelJob(job.jobId));
    actions.append(button);
  }
  if (RETRYABLE.has(job.status)) {
    const button = Object.assign(document.createElement("button"), { type: "button", className: "retry", textContent: "Retry" });
    button.addEventListener("click", () => retryJob(job.jobId));
    actions.append(button);
  }
  if (state.selected === job.jobId) renderDetail(job);
}

// --- live progress: one request per cycle for every visible active job (GET /jobs?ids=) ----------
// paced by the smallest Retry-After the API gives, never sooner than 1 s; after a 429 or 503 it backs
// off (5 s, doubling up to 60 s) so an open tab never spends a client's whole rate.
function activeIds() {
  const ids = [...document.querySelectorAll("#job-rows tr")].map((tr) => tr.dataset.id)
    .filter((id) => state.latest.has(id) && !TERMINAL.has(state.latest.get(id).status));
  const selected = state.selected && state.latest.get(state.selected);
  if (selected && !TERMINAL.has(selected.status) && !ids.includes(state.selected)) ids.push(state.selected);
  return ids.slice(0, MAX_IDS);
}

function startPolling() {
  // A poll already planned (perhaps a back-off) or in flight stays as it is.
  if (!state.pollTimer && !state.polling) schedulePoll(1);
}

function schedulePoll(seconds) {
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
  if (activeIds().length === 0) return;  // nothing to poll: a list refresh, a submit or a cancel starts again
  state.pollTimer = setTimeout(pollActive, Math.max(1, seconds || 1) * 1000);
}

async function pollActive() {
  state.pollTimer = null;
  const ids = activeIds();
  if (ids.length === 0) return;
  state.polling = true;
  try {
    const { data, retryAfter } = await api("GET", `jobs?ids=${ids.join(",")}`);
    if (state.backoff) notice("");
    state.backoff = 0;
    for (const job of data.jobs) {
      const tr = document.querySelector(`tr[data-id="${job.jobId}"]`);
      if (tr) update(tr, job);
      else if (state.selected === job.jobId) { state.latest.set(job.jobId, job); renderDetail(job); }
    }
    state.polling = false;
    schedulePoll(retryAfter);
  } catch (error) {
    state.polling = false;
    notice(explain(error), true);
    if (error.status === 429 || error.status === 503 || !(error instanceof ApiError)) {
      state.backoff = state.backoff ? Math.min(BACKOFF_MAX_S, state.backoff * 2) : BACKOFF_FIRST_S;
      schedulePoll(Math.max(state.backoff, error.retryAfter || 0));
    }
  }
}

function stopPolling() {
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
  state.backoff = 0;
}

async function cancelJob(jobId) {
  try {
    const { data } = await api("DELETE", `jobs/${jobId}`);
    const tr = document.querySelector(`tr[data-id="${jobId}"]`);
    if (tr) update(tr, data);
    notice(data.status === "CANCELLED" ? `Job ${jobId} cancelled.` : `Job ${jobId} stops at its next chunk.`);
    if (!TERMINAL.has(data.status)) startPolling();
  } catch (error) {
    notice(explain(error), true);
  }
}

// Retry: the job runs again under its id, from its last checkpoint; its old error shows as "Previous error".
async function retryJob(jobId) {
  try {
    const { data } = await api("POST", `jobs/${jobId}/retry`);
    state.full.delete(jobId);  // not finished any more: its whole view is read again at its new end
    state.deliveries.delete(jobId);
    const tr = document.querySelector(`tr[data-id="${jobId}"]`);
    if (tr) update(tr, data);
    else if (state.selected === jobId) { state.latest.set(jobId, data); renderDetail(data); }
    notice(`Job ${jobId} runs again.`);
    startPolling();
  } catch (error) {
    notice(explain(error), true);
  }
}

// "Cancel all pending sleep jobs": with a type chosen in the filters, POST /jobs/cancel for that type
// (and the status chosen, else every unfinished status), following its cursor; then the list again.
function matchingFilter() {
  const type = $("#filter-type").value;
  const status = $("#filter-status").value;
  if (!type || TERMINAL.has(status)) return null;
  return status ? { type, status } : { type };
}

function showCancelMatching() {
  const filter = matchingFilter();
  const button = $("#cancel-matching");
  button.hidden = !filter;
  if (filter) button.textContent = `Cancel all ${filter.status ? filter.status.toLowerCase() : "unfinished"} ${filter.type} jobs`;
}

async function cancelMatching() {
  const filter = matchingFilter();
  if (!filter || !window.confirm(`${$("#cancel-matching").textContent}?`)) return;
  try {
    let cancelled = 0;
    let cursor = null;
    do {
      const { data } = await api("POST", "jobs/cancel", cursor ? { ...filter, cursor } : filter);
      cancelled += data.cancelled;
      cursor = data.nextCursor;
    } while (cursor);
    notice(`Cancelled ${cancelled} ${filter.type} jobs (running ones stop at their next chunk).`);
    await loadList();
  } catch (error) {
    notice(explain(error), true);
  }
}

// --- the detail view ---------------------------------------------------------------------------------
function showDetail(jobId) {
  // The row's newest view; the poll of active jobs keeps it current. A finished job's result is not
  // in list items: its whole view is fetched once (GET /jobs/{id}).
  state.selected = jobId;
  renderDetail(state.latest.get(jobId));
  $("#detail").hidden = false;
  startPolling();
}

async function fetchFull(jobId) {
  state.full.set(jobId, null);  // asked for: not again
  try {
    const { data } = await api("GET", `jobs/${jobId}`);
    state.full.set(jobId, data);
    if (state.selected === jobId) renderDetail(data);
    const made = await api("GET", `jobs/${jobId}/deliveries`);
    state.deliveries.set(jobId, made.data.deliveries);
    if (state.selected === jobId) renderDeliveries(jobId);
  } catch (error) {
    state.full.delete(jobId);
    if (state.selected !== jobId) return;
    $("#detail-result").textContent = `(cannot load the result: ${explain(error)})`;
    // Throttled or briefly unavailable: read again after the wait the API asks for (the detail is open).
    if (error.status === 429 || error.status === 503) {
      setTimeout(() => { if (state.selected === jobId && !state.full.has(jobId)) fetchFull(jobId); }, 1000 * (error.retryAfter || 1));
    }
  }
}

function renderDeliveries(jobId) {
  // A job with a callbackUrl: each attempt with its time, the receiver's status or the error, the next retry.
  const made = state.deliveries.get(jobId) || [];
  $("#detail-webhook").hidden = made.length === 0;
  $("#detail-deliveries").replaceChildren(...made.map((d) => {
    const ok = d.statusCode !== null && d.statusCode >= 200 && d.statusCode < 300;
    const outcome = ok ? `${d.statusCode} delivered` : (d.statusCode !== null ? `${d.statusCode}` : "no answer");
    const then = d.nextRetryAt ? `; next retry ${d.nextRetryAt}` : (ok ? "" : "; not retried");
    const item = document.createElement("li");
    item.textContent = `${d.at}: ${outcome}${d.error ? ` (${d.error})` : ""}${then}`;
    item.classList.toggle("failed", !ok);
    return item;
  }));
}

function idLink(id, open) {
  // A job or batch id that opens it here (the text is the API's, set via textContent).
  const link = Object.assign(document.createElement("a"), { href: `#${id}`, textContent: id });
  link.addEventListener("click", (event) => { event.preventDefault(); open(id); });
  return link;
}

function renderDetail(view) {
  const job = state.full.get(view.jobId) || view;
  renderDeliveries(job.jobId);
  $("#detail-id").textContent = job.jobId;
  const dependsOn = job.dependsOn && job.dependsOn.length ? job.dependsOn : null;
  const fields = [["Type", job.type], ["Status", job.status], ["Progress", `${job.progress}%`], ["Message", job.message],
    ["Error", job.error], ["Previous error", job.previousError], ["Attempts", `${job.attempts} of ${job.maxAttempts}`], ["Created", job.createdAt],
    ["Priority", job.priority], ["Run at", job.runAt], ["Batch", job.batchId && idLink(job.batchId, showBatch)],
    ["Depends on", dependsOn && dependsOn.flatMap((id, i) => (i ? [", ", idLink(id, showJob)] : [idLink(id, showJob)]))],
    ["Started", job.startedAt], ["Finished", job.finishedAt], ["Updated", job.updatedAt], ["ETA", job.etaSeconds === null ? null : `${job.etaSeconds} s`]];
  $("#detail-fields").replaceChildren(...fields.filter(([, value]) => value !== null && value !== undefined && value !== "").flatMap(([name, value]) => {
    const dd = document.createElement("dd");
    if (value instanceof Node || Array.isArray(value)) dd.append(...[value].flat()); else dd.textContent = String(value);
    return [Object.assign(document.createElement("dt"), { textContent: name }), dd];
  }));
  const box = $("#detail-result");
  if (TERMINAL.has(job.status) && !("result" in job)) {
    box.textContent = "(loading...)";
    if (!state.full.has(job.jobId)) fetchFull(job.jobId);
  } else if (job.resultUrl) {
    // Kept in S3: a presigned link, valid a few minutes (GET /jobs/{id}/result makes a fresh one).
    const link = Object.assign(document.createElement("a"), { href: job.resultUrl, textContent: `Download the result (${job.resultBytes} bytes)`, rel: "noopener noreferrer", target: "_blank" });
    box.replaceChildren(link);
  } else if (job.status === "COMPLETED") {
    box.textContent = JSON.stringify(job.result, null, 2);
  } else {
    box.textContent = TERMINAL.has(job.status) ? `(none: the job is ${job.status})` : "(none yet)";
  }
}

async function showJob(jobId) {
  // A job that may not be on the page shown (a dependency, a batch member): its view, then its detail.
  try {
    const { data } = await api("GET", `jobs/${jobId}`);
    state.latest.set(jobId, data);
    if (TERMINAL.has(data.status)) state.full.set(jobId, data);
    showDetail(jobId);
  } catch (error) {
    notice(explain(error), true);
  }
}

// --- a batch ---------------------------------------------------------------------------------------
// "RUNNING  7 of 10 ended (6 completed, 1 failed)", a bar of the members' mean progress, the counts,
// the then job and the members (the first page of ids); polled by the API's Retry-After while active.
async function showBatch(batchId) {
  clearTimeout(state.batchTimer);
  state.batch = batchId;
  $("#batch-id").value = batchId;
  try {
    const { data, retryAfter } = await api("GET", `batches/${batchId}`);
    if (state.batch !== batchId) return;
    renderBatch(data);
    if (!TERMINAL.has(data.status)) state.batchTimer = setTimeout(() => showBatch(batchId), 1000 * (retryAfter || 1));
  } catch (error) {
    $("#batch-view").hidden = true;
    notice(explain(error), true);
  }
}

function renderBatch(batch) {
  const counts = Object.entries(batch.counts).filter(([, n]) => n > 0);
  const total = Object.values(batch.counts).reduce((a, b) => a + b, 0);
  const ended = counts.filter(([status]) => TERMINAL.has(status));
  const detail = ended.map(([status, n]) => `${n} ${status.toLowerCase()}`).join(", ");
  $("#batch-status").textContent = batch.status;
  $("#batch-status").className = `status ${batch.status}`;
  $("#batch-summary").textContent = `${ended.reduce((a, [, n]) => a + n, 0)} of ${total} ended${detail ? ` (${detail})` : ""}`;
  $("#batch-bar").className = `bar ${batch.status}`;
  $("#batch-bar span").style.width = `${batch.progress}%`;
  $("#batch-pct").textContent = `${batch.progress}%`;
  $("#batch-counts").replaceChildren(...counts.flatMap(([status, n]) =>
    [Object.assign(document.createElement("dt"), { textContent: status }), Object.assign(document.createElement("dd"), { textContent: String(n) })]));
  $("#batch-then").hidden = !batch.then;
  if (batch.then) $("#batch-then").replaceChildren("Then: ", idLink(batch.then.jobId, showJob), ` ${batch.then.status}`);
  $("#batch-members").replaceChildren(...batch.jobIds.map((id) => {
    const item = document.createElement("li");
    item.append(idLink(id, showJob));
    return item;
  }));
  $("#batch-cancel").disabled = TERMINAL.has(batch.status) || batch.cancelled;
  $("#batch-view").hidden = false;
}

async function cancelBatch() {
  try {
    const { data } = await api("DELETE", `batches/${state.batch}`);
    renderBatch(data);
    notice(`Cancelled the unfinished jobs of batch ${data.batchId}.`);
    showBatch(data.batchId);
  } catch (error) {
    notice(explain(error), true);
  }
}

// --- schedules: the list with next run and pause/resume (GET/PATCH/DELETE /schedules) --------------
async function loadSchedules() {
  const { data } = await api("GET", `schedules?limit=${PAGE_SIZE}`);
  $("#no-schedules").hidden = data.schedules.length > 0;
  $("#schedule-rows").replaceChildren(...data.schedules.map(scheduleRow));
}

function scheduleRow(schedule) {
  const tr = document.createElement("tr");
  tr.dataset.id = schedule.scheduleId;
  const when = (moment) => (moment ? new Date(moment).toLocaleString() : "-");
  const texts = [schedule.scheduleId.slice(-8), schedule.cron, schedule.timezone, schedule.job.type,
    schedule.paused ? "paused" : when(schedule.nextRunAt), when(schedule.lastRunAt), String(schedule.skipped)];
  const classes = ["col-id", "col-cron", "col-zone wide", "col-type", "col-next", "col-last wide", "col-skipped", "col-actions"];
  for (const [i, cls] of classes.entries()) {
    const td = Object.assign(document.createElement("td"), { className: cls, textContent: texts[i] || "" });
    if (i === 0) td.title = schedule.scheduleId;
    if (i === 6 && schedule.lastSkipReason) td.title = schedule.lastSkipReason;
    tr.append(td);
  }
  const toggle = Object.assign(document.createElement("button"), { type: "button", className: "toggle", textContent: schedule.paused ? "Resume" : "Pause" });
  toggle.addEventListener("click", () => changeSchedule("PATCH", schedule.scheduleId, { paused: !schedule.paused }));
  const remove = Object.assign(document.createElement("button"), { type: "button", className: "delete", textContent: "Delete" });
  remove.addEventListener("click", () => changeSchedule("DELETE", schedule.scheduleId));
  tr.lastChild.append(toggle, remove);
  return tr;
}

async function changeSchedule(method, scheduleId, body) {
  try {
    await api(method, `schedules/${scheduleId}`, body);
    notice(method === "DELETE" ? `Schedule ${scheduleId} deleted.` : `Schedule ${scheduleId} ${body.paused ? "paused" : "resumed"}.`);
    await loadSchedules();
  } catch (error) {
    notice(explain(error), true);
  }
}

async function createSchedule(event) {
  event.preventDefault();
  try {
    const job = { type: $("#job-type").value, payload: payloadFromForm() };
    const body = { cron: $("#schedule-cron").value.trim(), timezone: $("#schedule-timezone").value.trim(), job };
    const { data } = await api("POST", "schedules", body);
    notice(`Scheduled ${data.scheduleId}: next run ${new Date(data.nextRunAt).toLocaleString()}.`);
    await loadSchedules();
  } catch (error) {
    notice(error instanceof SyntaxError ? `The payload is not JSON: ${error.message}` : explain(error), true);
  }
}

// --- wiring ----------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", async () => {
  $("#key-form").addEventListener("submit", (event) => { event.preventDefault(); useKey($("#api-key").value.trim()); });
  $("#submit-form").addEventListener("submit", submitJob);
  $("#schedule-form").addEventListener("submit", createSchedule);
  for (const id of ["#filter-status", "#filter-type"]) {
    $(id).addEventListener("change", () => { state.cursor = null; state.previous = []; showCancelMatching(); loadList().catch((e) => notice(explain(e), true)); });
  }
  $("#cancel-matching").addEventListener("click", cancelMatching);
  $("#older").addEventListener("click", () => { state.previous.push(state.cursor); state.cursor = state.next; loadList().catch((e) => notice(explain(e), true)); });
  $("#newer").addEventListener("click", () => { state.cursor = state.previous.pop() || null; loadList().catch((e) => notice(explain(e), true)); });
  $("#detail-close").addEventListener("click", () => { state.selected = null; $("#detail").hidden = true; });
  $("#batch-form").addEventListener("submit", (event) => { event.preventDefault(); showBatch($("#batch-id").value.trim()); });
  $("#batch-cancel").addEventListener("click", cancelBatch);
  try {
    await loadTypes();
  } catch (error) {
    notice(`Cannot load the API description: ${error.message}`, true);
  }
  if (state.key) {
    $("#api-key").value = state.key;
    useKey(state.key);
  }
});
