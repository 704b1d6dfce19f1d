// The console in the browser: a hash router over the views, and the few actions (decide,
// re-drive, load more). Everything shown comes from views.js (escaped); the only DOM
// writes here are those strings, and bar geometry set through the CSSOM (the page's CSP
// forbids inline style attributes).
import { ApiError, createApi } from "./api.js";
import { route } from "./html.js";
import * as views from "./views.js";

const api = createApi();
const main = document.getElementById("main");
let catalogPromise = null;

function catalog() {
  catalogPromise = catalogPromise || api.catalog();
  return catalogPromise;
}

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, qs] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { parts, query: new URLSearchParams(qs || "") };
}

function show(fragment) {
  main.innerHTML = String(fragment);
  for (const el of main.querySelectorAll("[data-left]")) {
    el.style.left = `${el.dataset.left}%`;
    el.style.width = `${el.dataset.width}%`;
  }
}

function markNav(section) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === section);
  }
}

async function entityPage(parts, query) {
  const cat = await catalog();
  const [type, id] = [parts[1], parts[2]];
  const picker = views.entityPicker(cat, type, id);
  if (!type || !id) return show(picker);
  const wanted = query.get("version");
  let latest, state, page;
  try {
    [latest, state, page] = await Promise.all([
      api.entityState(type, id),
      wanted ? api.entityState(type, id, wanted) : null,
      api.entityEvents(type, id, 0, 50),
    ]);
  } catch (err) {
    return show(`${picker}${views.errorView(err)}`); // keep the picker: try another id
  }
  const view = views.entityView({
    type,
    id,
    state: state || latest,
    latest: latest.version,
    events: page.events,
    nextAfter: page.next_after,
  });
  show(`${picker}${view}`);
  main.dataset.entity = JSON.stringify([type, id, (state || latest).version]);
}

async function workflowsPage(query) {
  const cat = await catalog();
  const filter = {
    type: query.get("type") || "",
    status: query.get("status") || "",
    after: query.get("after") || "",
  };
  const page = await api.workflows({ ...filter, limit: 50 });
  show(views.workflowList({ catalog: cat, filter, page }));
}

async function workflowPage(type, id) {
  show(views.timelineView(await api.timeline(type, id)));
}

async function approvalsPage(query) {
  const approver = query.get("approver") || "";
  show(views.approvalsView(await api.approvals(approver || undefined), approver));
}

async function deadLettersPage(query) {
  const after = query.get("after") || undefined;
  show(views.deadLettersView(await api.deadLetters(after), after));
}

async function render() {
  const { parts, query } = parseHash();
  const section = parts[0] || "workflows";
  markNav(section);
  try {
    if (section === "entities") await entityPage(parts, query);
    else if (section === "workflows" && parts.length >= 3) await workflowPage(parts[1], parts[2]);
    else if (section === "workflows") await workflowsPage(query);
    else if (section === "approvals") await approvalsPage(query);
    else if (section === "deadletters") await deadLettersPage(query);
    else show(views.errorView(new Error(`no page ${section}`)));
  } catch (err) {
    show(views.errorView(err));
  }
}

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

main.addEventListener("submit", async (event) => {
  const form = event.target;
  const kind = form.dataset.form;
  if (!kind) return;
  event.preventDefault();
  const values = formValues(form);
  if (kind === "entity") location.hash = route(["entities", values.type, values.id]);
  else if (kind === "workflow") location.hash = route(["workflows", values.type, values.id]);
  else if (kind === "workflows") location.hash = route(["workflows"], { type: values.type, status: values.status });
  else if (kind === "approvals") location.hash = route(["approvals"], { approver: values.approver });
  else if (kind === "repair") {
    const action = event.submitter ? event.submitter.value : "retry";
    try {
      await api.repair(form.dataset.type, form.dataset.id, form.dataset.index, action, values.reason || "");
      await render();
    } catch (err) {
      form.insertAdjacentHTML("afterend", String(views.errorView(err)));
    }
  } else if (kind === "decide") {
    const approved = event.submitter ? event.submitter.value === "true" : false;
    const decision = { approved, by: values.by, comment: values.comment || "" };
    try {
      await api.decide(form.dataset.type, form.dataset.id, form.dataset.signal, decision);
      await render();
    } catch (err) {
      form.insertAdjacentHTML("afterend", String(views.errorView(err)));
    }
  }
});

main.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-action]");
  if (!button) return;
  const action = button.dataset.action;
  button.disabled = true;
  try {
    if (action === "redrive") {
      await api.redrive(button.dataset.id);
      await render();
    } else if (action === "more-events") {
      const [type, id, shown] = JSON.parse(main.dataset.entity);
      const page = await api.entityEvents(type, id, Number(button.dataset.after), 50);
      main.querySelector("[data-list=events]").insertAdjacentHTML(
        "beforeend",
        String(views.eventItems(type, id, page.events, shown)),
      );
      if (page.next_after === null) button.remove();
      else {
        button.dataset.after = String(page.next_after);
        button.textContent = `Older events after version ${page.next_after}…`;
        button.disabled = false;
      }
    }
  } catch (err) {
    button.disabled = false;
    const message = err instanceof ApiError ? err : new Error(String(err));
    button.insertAdjacentHTML("afterend", String(views.errorView(message)));
  }
});

window.addEventListener("hashchange", render);
render();
