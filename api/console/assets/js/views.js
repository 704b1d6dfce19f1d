// The console's pages as HTML strings: pure functions of what the API returned, with every
// value escaped by html`...`. No DOM here, so the same code runs under node in the tests.
import { duration, html, pretty, route, when } from "./html.js";

export const STATUSES = ["running", "compensating", "completed", "compensated", "failed", "parked"];

function options(values, selected, empty) {
  return html`${empty === undefined ? "" : html`<option value="">${empty}</option>`}${values.map(
    (v) => html`<option value="${v}"${v === selected ? html` selected` : ""}>${v}</option>`,
  )}`;
}

function badge(status) {
  return html`<span class="badge status-${String(status).replace(/[^a-z_]/g, "")}">${status}</span>`;
}

export function errorView(err) {
  const status = err && err.status ? html` (HTTP ${err.status})` : "";
  const hint = err && err.body && err.body.hint ? html`<p class="muted">${err.body.hint}</p>` : "";
  return html`<div class="error"><p>${(err && err.message) || String(err)}${status}</p>${hint}</div>`;
}

// -- entities ------------------------------------------------------------------------------

export function entityPicker(catalog, type, id) {
  const types = catalog.entities.map((e) => e.type);
  return html`<form class="picker" data-form="entity">
    <label>Type <select name="type" required>${options(types, type)}</select></label>
    <label>Id <input name="id" required maxlength="200" value="${id || ""}" placeholder="acct-7"></label>
    <button type="submit">Show</button>
  </form>`;
}

export function entityView({ type, id, state, latest, events, nextAfter }) {
  const version = state.version;
  const steps = html`<div class="versions">
    ${version > 1 ? html`<a href="${route(["entities", type, id], { version: version - 1 })}">◀ version ${version - 1}</a>` : ""}
    <strong>version ${version} of ${latest}</strong>
    ${version < latest ? html`<a href="${route(["entities", type, id], { version: version + 1 })}">version ${version + 1} ▶</a>` : ""}
    ${version < latest ? html`<a href="${route(["entities", type, id])}">newest</a>` : ""}
  </div>`;
  return html`<section>
    <h2>${type} / ${id}</h2>
    ${steps}
    <h3>State at version ${version}</h3>
    <pre class="json">${pretty(state.state)}</pre>
    <h3>History</h3>
    <ol class="events" data-list="events">${eventItems(type, id, events, version)}</ol>
    ${nextAfter === null || nextAfter === undefined ? "" : html`<button data-action="more-events" data-after="${nextAfter}">Older events after version ${nextAfter}…</button>`}
  </section>`;
}

export function eventItems(type, id, events, shown) {
  return events.map(
    (e) => html`<li class="${e.version === shown ? "current" : ""}">
      <div class="event-head"><a href="${route(["entities", type, id], { version: e.version })}">v${e.version}</a>
        <code>${e.type}</code> <span class="muted">${when(e.timestamp)}</span></div>
      <pre class="json">${pretty(e.data)}</pre>
    </li>`,
  );
}

// -- workflows -----------------------------------------------------------------------------

export function workflowList({ catalog, filter, page }) {
  const types = catalog.workflows.map((w) => w.type);
  const rows = page.executions.map(
    (x) => html`<tr>
      <td><a href="${route(["workflows", x.workflow_type, x.workflow_id])}">${x.workflow_id}</a></td>
      <td>${x.workflow_type}</td><td>${badge(x.status)}</td>
      <td>${when(x.started_at)}</td><td>${when(x.updated_at)}</td>
      <td class="muted">${x.summary && x.summary.error ? x.summary.error : ""}</td>
    </tr>`,
  );
  const next = page.next_after
    ? html`<a class="button" href="${route(["workflows"], { ...filter, after: page.next_after })}">Next page ▶</a>`
    : "";
  const first = filter.after ? html`<a class="button" href="${route(["workflows"], { ...filter, after: "" })}">◀ First page</a>` : "";
  return html`<section>
    <h2>Workflows</h2>
    <form class="picker" data-form="workflows">
      <label>Type <select name="type">${options(types, filter.type, "any")}</select></label>
      <label>Status <select name="status">${options(STATUSES, filter.status, "any")}</select></label>
      <button type="submit">Filter</button>
    </form>
    <form class="picker" data-form="workflow">
      <label>Open <select name="type" required>${options(types, filter.type)}</select></label>
      <label>Id <input name="id" required maxlength="100" placeholder="order-17"></label>
      <button type="submit">Open</button>
    </form>
    ${rows.length ? html`<table><thead><tr><th>Id</th><th>Type</th><th>Status</th><th>Started</th><th>Updated</th><th>Error</th></tr></thead><tbody>${rows}</tbody></table>` : html`<p class="muted">No executions match.</p>`}
    <div class="pager">${first}${next}</div>
  </section>`;
}

function axis(timeline) {
  const times = timeline.entries.flatMap((e) => [e.start, e.end]).filter(Boolean).map(Date.parse);
  const start = Date.parse(timeline.started_at) || Math.min(...times);
  const end = Math.max(
    ...times,
    Date.parse(timeline.ended_at || timeline.updated_at) || start,
  );
  const span = Math.max(end - start, 1);
  const at = (iso) => Math.min(100, Math.max(0, ((Date.parse(iso) - start) / span) * 100));
  return { start, end, span, at };
}

function bar(ax, from, to, cls, title) {
  const left = ax.at(from);
  const right = to ? ax.at(to) : 100;
  const width = Math.max(right - left, 0.4);
  return html`<span class="${cls}" data-left="${left.toFixed(3)}" data-width="${width.toFixed(3)}" title="${title}"></span>`;
}

function attemptRows(entry) {
  if (!entry.attempts.length) return "";
  return html`<table class="attempts"><thead><tr><th>Attempt</th><th>Sent</th><th>Answered</th><th>Took</th><th>Verdict</th><th>Error</th></tr></thead><tbody>${entry.attempts.map(
    (a) => html`<tr><td>${a.attempt}</td><td>${when(a.started_at)}</td><td>${when(a.ended_at)}</td>
      <td>${duration(a.duration_seconds)}</td><td>${badge(a.status)}</td>
      <td>${a.error || ""}${a.code ? html` <code>${a.code}</code>` : ""}</td></tr>`,
  )}</tbody></table>`;
}

// Where an entry's target lives in the console: the entity it called, the child it started.
function targetLink(entry) {
  const address = entry.detail && entry.detail.address;
  if (typeof address !== "string" || address.startsWith("activity:")) return "";
  const child = address.startsWith("workflow:");
  const [type, ...rest] = address.replace(/^workflow:/, "").split("/");
  if (!type || !rest.length) return "";
  const href = route([child ? "workflows" : "entities", type, rest.join("/")]);
  return html` <a class="target" href="${href}">${child ? "open child" : "open entity"}</a>`;
}

// The compensation that ran out of attempts: retry it (the cause fixed) or skip it with a
// reason (undone by hand); the server refuses what does not fit and records nothing.
function repairForm(timeline, c) {
  return html`<form data-form="repair" data-type="${timeline.workflow_type}" data-id="${timeline.workflow_id}" data-index="${c.index}">
    <input name="reason" placeholder="reason (a skip needs one)" maxlength="500">
    <button name="action" value="retry">Retry</button>
    <button name="action" value="skip">Skip</button>
  </form>`;
}

export function timelineView(timeline) {
  const ax = axis(timeline);
  const rows = timeline.entries.map((e) => {
    const title = `${e.kind} ${e.name}: ${e.status}, ${duration(e.duration_seconds)}`;
    const attempts = e.attempts.map((a) =>
      bar(ax, a.started_at, a.ended_at, `attempt status-${String(a.status).replace(/[^a-z_]/g, "")}`, `attempt ${a.attempt}: ${a.status}`),
    );
    return html`<li class="entry kind-${e.kind}" data-entry="${e.id}">
      <div class="label"><span class="kind">${e.kind}</span> ${e.seq ? html`#${e.seq} ` : ""}${e.name}
        ${badge(e.status)} <span class="muted">${duration(e.duration_seconds)}${e.attempts.length > 1 ? html`, ${e.attempts.length} attempts` : ""}</span>${targetLink(e)}</div>
      <div class="track">${bar(ax, e.start, e.end, "span", title)}${attempts}</div>
      <details><summary>${when(e.start)}${e.end ? html` → ${when(e.end)}` : " → (open)"}</summary>
        ${e.error ? html`<p class="error-text">${e.error}</p>` : ""}
        ${attemptRows(e)}
        ${Object.keys(e.detail).length ? html`<pre class="json">${pretty(e.detail)}</pre>` : ""}
      </details>
    </li>`;
  });
  const comps = timeline.compensations.map(
    (c) => html`<tr><td>#${c.index}</td><td>${c.name}</td><td>${badge(c.status)}</td><td>${c.attempts}</td><td>${c.error || ""}</td><td>${timeline.status === "failed" && c.status === "failed" ? repairForm(timeline, c) : ""}</td></tr>`,
  );
  return html`<section>
    <h2>${timeline.workflow_type} / ${timeline.workflow_id} ${badge(timeline.status)}</h2>
    <dl class="facts">
      <dt>Started</dt><dd>${when(timeline.started_at)}</dd>
      <dt>Ended</dt><dd>${timeline.ended_at ? when(timeline.ended_at) : "not yet"}</dd>
      <dt>Version</dt><dd>${timeline.version}</dd>
      ${timeline.waiting_on.length ? html`<dt>Waiting on</dt><dd><ul>${timeline.waiting_on.map((w) => html`<li>${w}</li>`)}</ul></dd>` : ""}
      ${timeline.error ? html`<dt>Error</dt><dd class="error-text">${timeline.error}</dd>` : ""}
      ${timeline.failed_compensation ? html`<dt>Failed compensation</dt><dd>${timeline.failed_compensation}</dd>` : ""}
      ${timeline.status === "completed" ? html`<dt>Result</dt><dd><pre class="json">${pretty(timeline.result)}</pre></dd>` : ""}
      <dt>Memo</dt><dd>${timeline.memo === null ? html`<span class="muted">unavailable (the code does not replay this history)</span>` : html`<pre class="json">${pretty(timeline.memo)}</pre>`}</dd>
    </dl>
    <h3>Timeline <span class="muted">${when(new Date(ax.start).toISOString())} — ${duration(ax.span / 1000)}</span></h3>
    <ol class="timeline">${rows}</ol>
    <h3>Compensations</h3>
    ${timeline.compensations_pending.length ? html`<p>Pending, newest first: ${timeline.compensations_pending.join(", ")}</p>` : html`<p class="muted">None pending.</p>`}
    ${comps.length ? html`<table><thead><tr><th>#</th><th>Undoes with</th><th>Status</th><th>Attempts</th><th>Error</th><th>Repair</th></tr></thead><tbody>${comps}</tbody></table>` : ""}
  </section>`;
}

// -- approvals and dead letters -----------------------------------------------------------

export function approvalsView(list, approver) {
  const rows = list.approvals.map(
    (a) => html`<tr>
      <td><a href="${route(["workflows", a.workflow_type, a.workflow_id])}">${a.workflow_type} / ${a.workflow_id}</a></td>
      <td>${a.approval}</td><td>${a.approvers.join(", ")}</td><td>${when(a.since)}</td><td>${when(a.next_escalation)}</td>
      <td><form class="decide" data-form="decide" data-type="${a.workflow_type}" data-id="${a.workflow_id}" data-signal="${a.approval}">
        <input name="by" required maxlength="200" placeholder="your name" value="${approver || ""}">
        <input name="comment" maxlength="500" placeholder="comment">
        <button type="submit" name="approved" value="true">Approve</button>
        <button type="submit" name="approved" value="false" class="danger">Reject</button>
      </form></td>
    </tr>`,
  );
  return html`<section>
    <h2>Pending approvals</h2>
    <form class="picker" data-form="approvals">
      <label>Approver <input name="approver" maxlength="200" value="${approver || ""}" placeholder="anyone"></label>
      <button type="submit">Filter</button>
    </form>
    ${rows.length ? html`<table><thead><tr><th>Execution</th><th>Approval</th><th>Who may decide</th><th>Since</th><th>Next rung</th><th>Decide</th></tr></thead><tbody>${rows}</tbody></table>` : html`<p class="muted">Nobody is waiting for a decision.</p>`}
  </section>`;
}

export function deadLettersView(page, after) {
  if (!page.available) {
    return html`<section><h2>Dead letters</h2>
      <p class="notice">Dead letters are not available on this server: <code>GET /deadletters</code> answered 404 (its API predates them).</p></section>`;
  }
  const rows = page.dead_letters.map(
    (d) => html`<tr>
      <td><code>${d.id}</code></td>
      <td><a href="${route(["entities", d.entity_type, d.entity_id])}">${d.entity_type} / ${d.entity_id}</a></td>
      <td>${d.command}</td><td class="error-text">${d.error}</td><td>${d.source}</td><td>${when(d.at)}</td>
      <td>${d.redriven_at ? html`re-driven ${when(d.redriven_at)}` : html`<button data-action="redrive" data-id="${d.id}">Re-drive</button>`}</td>
    </tr>`,
  );
  const next = page.next_after
    ? html`<a class="button" href="${route(["deadletters"], { after: page.next_after })}">Next page ▶</a>`
    : "";
  const first = after ? html`<a class="button" href="${route(["deadletters"])}">◀ First page</a>` : "";
  return html`<section><h2>Dead letters</h2>
    ${rows.length ? html`<table><thead><tr><th>Id</th><th>Entity</th><th>Command</th><th>Error</th><th>Source</th><th>At</th><th></th></tr></thead><tbody>${rows}</tbody></table>` : html`<p class="muted">No dead letters.</p>`}
    <div class="pager">${first}${next}</div></section>`;
}
