// HTML built as strings, escaped by default: every value interpolated into html`...` is
// escaped unless it is itself the result of html`...` (or raw()). Entity ids, payloads,
// errors and everything else the API returns are user-controlled, so nothing reaches the
// page unescaped; the page's Content-Security-Policy forbids inline scripts besides.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };

export function escapeHtml(value) {
  return String(value ?? "").replace(/[&<>"'`]/g, (c) => ESCAPES[c]);
}

class Safe {
  constructor(text) {
    this.text = text;
  }

  toString() {
    return this.text;
  }
}

// Markup the console wrote itself (never a value from the API).
export function raw(text) {
  return new Safe(String(text));
}

function part(value) {
  if (value instanceof Safe) return value.text;
  if (Array.isArray(value)) return value.map(part).join("");
  if (value === null || value === undefined || value === false) return "";
  return escapeHtml(value);
}

export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((value, i) => {
    out += part(value) + strings[i + 1];
  });
  return new Safe(out);
}

// A hash link inside the console: each segment URL-encoded, so an id cannot leave the path.
export function route(segments, query = {}) {
  const path = "#/" + segments.map((s) => encodeURIComponent(String(s))).join("/");
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "open";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${+seconds.toFixed(2)} s`;
  if (seconds < 7200) return `${+(seconds / 60).toFixed(1)} min`;
  if (seconds < 172800) return `${+(seconds / 3600).toFixed(1)} h`;
  return `${+(seconds / 86400).toFixed(1)} d`;
}

export function when(iso) {
  if (!iso) return "";
  return String(iso).replace("T", " ").replace(/(\.\d{3})\d*/, "$1");
}
