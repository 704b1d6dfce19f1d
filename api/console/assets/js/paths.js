// The JSON routes the console calls, written in this one place: the console never builds
// a path anywhere else, and a test (tests/api_tests/test_console.py) checks every one
// against /openapi.json, so the console cannot drift from the API. {type} is an entity or
// workflow type from GET /catalog; the other {names} are filled, URL-encoded, by api.js.
// The object below must stay plain JSON (the test reads it as JSON).
export const PATHS = Object.freeze({
  "catalog": "/catalog",
  "entityState": "/entities/{type}/{entity_id}",
  "entityEvents": "/entities/{type}/{entity_id}/events",
  "workflows": "/workflows",
  "workflowStatus": "/workflows/{type}/{workflow_id}",
  "workflowTimeline": "/workflows/{type}/{workflow_id}/timeline",
  "workflowSignal": "/workflows/{type}/{workflow_id}/signals/{signal}",
  "workflowRepair": "/workflows/{type}/{workflow_id}/compensations/{index}/{action}",
  "approvals": "/approvals",
  "deadLetters": "/deadletters",
  "deadLetterRedrive": "/deadletters/{id}/redrive"
});

// Routes a server may not have (an older one): a 404 there means "not available here",
// and the page says so instead of failing.
export const OPTIONAL = Object.freeze(["deadLetters", "deadLetterRedrive"]);
