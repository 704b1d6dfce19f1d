// Drives the console's own modules (api.js, views.js) under node against a running API,
// and prints what they rendered as JSON for tests/api_tests/test_console.py to check.
// argv: the assets directory's file URL, the server's base URL, the job as JSON.
const [, , assetsUrl, base, input] = process.argv;
const { createApi, fill } = await import(new URL("js/api.js", assetsUrl));
const views = await import(new URL("js/views.js", assetsUrl));
const job = JSON.parse(input);
const calls = [];
const api = createApi((url, init) => {
  calls.push(`${(init && init.method) || "GET"} ${url}`);
  return fetch(base + url, init);
});
const out = { calls };

const catalog = await api.catalog();
out.entityTypes = catalog.entities.map((e) => e.type);
const latest = await api.entityState(job.type, job.id);
const first = await api.entityState(job.type, job.id, 1);
const page = await api.entityEvents(job.type, job.id, 0, 1);
const rest = await api.entityEvents(job.type, job.id, page.next_after, 50);
out.versions = [first.version, latest.version, page.next_after, rest.next_after];
out.entity = String(
  views.entityView({
    type: job.type,
    id: job.id,
    state: first,
    latest: latest.version,
    events: [...page.events, ...rest.events],
    nextAfter: null,
  }),
);
out.picker = String(views.entityPicker(catalog, job.type, job.id));

const timeline = await api.timeline(job.workflowType, job.workflowId);
out.timelineStatus = timeline.status;
out.timeline = String(views.timelineView(timeline));
const list = await api.workflows({ type: job.workflowType, limit: 1 });
out.listed = list.executions.length;
out.list = String(views.workflowList({ catalog, filter: { type: job.workflowType }, page: list }));
out.approvals = String(views.approvalsView(await api.approvals(), job.hostile));

const deadLetters = await api.deadLetters();
out.deadLettersAvailable = deadLetters.available;
out.deadLetters = String(views.deadLettersView(deadLetters));
const hostileLetter = {
  id: job.hostile,
  entity_type: job.type,
  entity_id: job.id,
  command: job.hostile,
  error: job.hostile,
  source: job.hostile,
  at: "2030-01-01T00:00:00Z",
  redriven_at: null,
};
// A server with the dead-letter routes (their contract), faked: the list, then a re-drive.
out.fakeCalls = [];
const fake = createApi(async (url, init) => {
  out.fakeCalls.push(`${(init && init.method) || "GET"} ${url}`);
  if (url.endsWith("/redrive")) return new Response(null, { status: 202 });
  return new Response(JSON.stringify({ dead_letters: [hostileLetter], next_after: "n<2>" }));
});
const fakePage = await fake.deadLetters();
out.fakeDeadLetters = String(views.deadLettersView(fakePage));
out.redriven = await fake.redrive(hostileLetter.id);

try {
  await api.timeline(job.workflowType, `${job.workflowId}-missing`);
  out.missing = null;
} catch (err) {
  out.missing = { status: err.status, html: String(views.errorView(err)) };
}
out.filled = fill("/entities/{type}/{entity_id}", { type: "A", entity_id: "a/b?c#d" });
console.log(JSON.stringify(out));
