// Runs the console's app.js (the router and its actions) under node with a stub DOM that
// records what each page wrote, against a running API. No browser: this proves the
// wiring (routes, calls, decisions, re-rendering), not the look.
// argv: the assets directory's file URL, the server's base URL, the job as JSON.
const [, , assetsUrl, base, input] = process.argv;
const job = JSON.parse(input);
const listeners = {};
const main = {
  innerHTML: "",
  dataset: {},
  addEventListener: (type, fn) => (listeners[`main:${type}`] = fn),
  querySelectorAll: () => [],
  querySelector: () => null,
};
const calls = [];
globalThis.document = { getElementById: () => main, querySelectorAll: () => [] };
globalThis.location = { hash: "" };
globalThis.window = { addEventListener: (type, fn) => (listeners[`window:${type}`] = fn) };
const realFetch = globalThis.fetch;
globalThis.fetch = (url, init) => {
  calls.push(`${(init && init.method) || "GET"} ${url}`);
  return realFetch(base + url, init);
};

async function settled(before) {
  for (let i = 0; i < 500; i++) {
    if (main.innerHTML !== before) return main.innerHTML;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`the page did not change from: ${before.slice(0, 200)}`);
}

const pages = {};
await import(new URL("js/app.js", assetsUrl));
pages.start = await settled("");
for (const [name, hash] of Object.entries(job.hashes)) {
  const before = main.innerHTML;
  main.innerHTML = "";
  location.hash = hash;
  listeners["window:hashchange"]();
  pages[name] = await settled("");
  if (pages[name] === before && name !== "start") pages[name] = main.innerHTML;
}

// approve the open approval through the page's own form handler
location.hash = "#/approvals";
const form = {
  dataset: { form: "decide", type: job.decide.type, id: job.decide.id, signal: job.decide.signal },
  insertAdjacentHTML: (where, text) => (pages.decideError = text),
};
globalThis.FormData = class {
  constructor() {
    this.values = { by: "manager", comment: "fine <b>by</b> me" };
  }

  entries() {
    return Object.entries(this.values);
  }
};
main.innerHTML = "";
await listeners["main:submit"]({
  target: form,
  submitter: { value: "true" },
  preventDefault: () => {},
});
pages.afterDecide = await settled("");

// repair a failed saga's compensation through the timeline page's own form handler
if (job.repair) {
  main.innerHTML = "";
  location.hash = job.repair.hash;
  listeners["window:hashchange"]();
  pages.failed = await settled("");
  globalThis.FormData = class {
    constructor() {
      this.values = { reason: job.repair.reason };
    }

    entries() {
      return Object.entries(this.values);
    }
  };
  const repairForm = {
    dataset: {
      form: "repair",
      type: job.repair.type,
      id: job.repair.id,
      index: String(job.repair.index),
    },
    insertAdjacentHTML: (where, text) => (pages.repairError = text),
  };
  main.innerHTML = "";
  await listeners["main:submit"]({
    target: repairForm,
    submitter: { value: "skip" },
    preventDefault: () => {},
  });
  pages.afterRepair = await settled("");
}
console.log(JSON.stringify({ pages, calls }));
