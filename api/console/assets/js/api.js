// The console's only door to the API: each call names a route of PATHS (paths.js).
import { OPTIONAL, PATHS } from "./paths.js";

export class ApiError extends Error {
  constructor(status, body, url) {
    const message = (body && (body.message || body.detail)) || `HTTP ${status}`;
    super(typeof message === "string" ? message : JSON.stringify(message));
    this.status = status;
    this.body = body;
    this.url = url;
  }
}

export function fill(template, params) {
  return template.replace(/\{(\w+)\}/g, (_, name) => {
    if (params[name] === undefined || params[name] === null) {
      throw new Error(`no value for {${name}} in ${template}`);
    }
    return encodeURIComponent(String(params[name]));
  });
}

export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

export function createApi(fetchImpl = (...args) => globalThis.fetch(...args)) {
  async function call(name, params = {}, query = {}, init = {}) {
    const template = PATHS[name];
    if (template === undefined) throw new Error(`the console has no route named ${name}`);
    const url = withQuery(fill(template, params), query);
    const headers = { accept: "application/json" };
    if (init.body !== undefined) headers["content-type"] = "application/json";
    const response = await fetchImpl(url, { ...init, headers });
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = { message: text.slice(0, 500) };
    }
    if (!response.ok) throw new ApiError(response.status, body, url);
    return body;
  }

  // An optional route that answers 404 is absent from this server: say so, do not fail.
  async function optional(name, run) {
    if (!OPTIONAL.includes(name)) throw new Error(`${name} is not an optional route`);
    try {
      return { available: true, ...(await run()) };
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return { available: false };
      throw err;
    }
  }

  return {
    catalog: () => call("catalog"),
    entityState: (type, id, version) =>
      call("entityState", { type, entity_id: id }, { version }),
    entityEvents: (type, id, after = 0, limit = 50) =>
      call("entityEvents", { type, entity_id: id }, { after, limit }),
    workflows: ({ type, status, after, limit = 50 } = {}) =>
      call("workflows", {}, { type, status, after, limit }),
    workflowStatus: (type, id) => call("workflowStatus", { type, workflow_id: id }),
    timeline: (type, id) => call("workflowTimeline", { type, workflow_id: id }),
    approvals: (approver) => call("approvals", {}, { approver }),
    decide: (type, id, signal, decision) =>
      call(
        "workflowSignal",
        { type, workflow_id: id, signal },
        {},
        { method: "POST", body: JSON.stringify(decision) },
      ),
    deadLetters: (after, limit = 50) =>
      optional("deadLetters", () => call("deadLetters", {}, { after, limit })),
    repair: (type, id, index, action, reason) =>
      call(
        "workflowRepair",
        { type, workflow_id: id, index, action },
        {},
        { method: "POST", body: JSON.stringify({ reason }) },
      ),
    redrive: (id) => call("deadLetterRedrive", { id }, {}, { method: "POST" }),
  };
}
