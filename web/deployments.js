// Deployments: the paged list (counts only), and the one deployment that is open with
// its steps. Polling reads the first page and the open deployment, nothing else:
// older pages are read once, when asked for with "Older deployments".
import { ACTIVE_STEP_STATUSES, FINAL_DEPLOYMENT_STATUSES, FINAL_STEP_STATUSES } from "./vocabulary.js";
import { agentStatus } from "./agents.js";
import { AuthError, enc, get } from "./api.js";
import { detailModel, detailRows, initDetail } from "./deployment-detail.js";
import { $, ago, badge, duration, el, reconcile, say, when } from "./dom.js";
import { closeLog, openLog, selectedStepId, updateStep } from "./log-view.js";

export const PAGE_SIZE = 25;
const TERMINAL_DEPLOYMENT = new Set(FINAL_DEPLOYMENT_STATUSES);
// Counts read results first, then what is still running, then what waits.
const COUNT_ORDER = [...FINAL_STEP_STATUSES, ...[...ACTIVE_STEP_STATUSES].reverse()];

let known = new Map(); // id → summary, of the pages shown
let firstNext = null; // `next` of the first page
let olderLoaded = false; // whether older pages were loaded (then olderNext is their cursor)
let olderNext = null;
// { id, view, inflight, sawTerminal, done, doneSig, error }: polled until terminal, then once more.
let open = null;
let hooks = { refused: () => {} };

export function initDeployments(h) {
  hooks = h;
  initDetail({ refused: h.refused, changed: h.changed, rerender: () => renderDeployments() });
  $("older").addEventListener("click", loadOlder);
}

export function resetDeployments() {
  known = new Map();
  firstNext = olderNext = null;
  olderLoaded = false;
  open = null;
  closeLog();
  say($("deployments-message"), "");
  for (const body of [...$("deployments").tBodies]) body.remove();
}

// --- reading --------------------------------------------------------------------------

export const firstPagePath = () => `/api/v1/deployments?limit=${PAGE_SIZE}`;

export function applyFirstPage(page) {
  const previous = known;
  const reset = !olderLoaded || (!page.deployments.some((d) => previous.has(d.id)) && page.next !== null);
  if (reset) {
    // Without older pages, the list is the first page. With them, a first page that
    // shares nothing with what is shown means more than a page of new deployments came
    // since the last poll: what lies between is unknown, so the older pages go.
    known = new Map(page.deployments.map((d) => [d.id, d]));
    olderLoaded = false;
    olderNext = null;
    if (open && !known.has(open.id) && previous.has(open.id)) known.set(open.id, previous.get(open.id));
  } else {
    for (const d of page.deployments) known.set(d.id, d);
  }
  firstNext = page.next;
}

async function loadOlder() {
  const cursor = olderLoaded ? olderNext : firstNext;
  if (!cursor) return;
  const button = $("older");
  button.disabled = true;
  try {
    const page = await get(`/api/v1/deployments?limit=${PAGE_SIZE}&before=${enc(cursor)}`);
    for (const d of page.deployments) if (!known.has(d.id)) known.set(d.id, d);
    olderLoaded = true;
    olderNext = page.next;
    say($("deployments-message"), "");
    renderDeployments();
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("deployments-message"), `Cannot load older deployments: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

const summarySig = (d) => JSON.stringify([d.status, d.finishedAt, d.stepCounts]);

// Reads the open deployment while it runs, and once more after it ended (a last
// result can land just after the status); after that only if the list shows it
// changed (a result delivered after the agent was given up on).
export function pollOpen() {
  const o = open;
  if (!o) return Promise.resolve();
  if (o.done) {
    const summary = known.get(o.id);
    if (!summary || summarySig(summary) === o.doneSig) return Promise.resolve();
    o.done = false;
  }
  if (!o.inflight) o.inflight = readOpen(o).finally(() => { o.inflight = null; });
  return o.inflight;
}

async function readOpen(o) {
  try {
    const view = await get(`/api/v1/deployments/${enc(o.id)}`);
    if (open !== o) return;
    o.view = view;
    o.error = null;
    if (TERMINAL_DEPLOYMENT.has(view.status)) {
      if (o.sawTerminal) {
        o.done = true;
        o.doneSig = known.has(o.id) ? summarySig(known.get(o.id)) : null;
      }
      o.sawTerminal = true;
    }
    for (const s of view.steps) updateStep(s);
  } catch (err) {
    if (open !== o || err instanceof AuthError) throw err;
    o.error = `Cannot load its steps: ${err.message}`;
  }
}

export function openDeployment(id) {
  if (open?.id === id) return;
  closeLog();
  open = { id, view: null, inflight: null, sawTerminal: false, done: false, doneSig: null, error: null };
  renderDeployments();
  pollOpen().then(renderDeployments, failed);
}

function toggle(id) {
  if (open?.id !== id) return openDeployment(id);
  open = null;
  closeLog();
  renderDeployments();
}

function selectStep(stepId) {
  const view = open?.view;
  const step = view?.steps.find((x) => x.id === stepId);
  if (!step) return;
  if (selectedStepId() === step.id) closeLog();
  else openLog(view, step).catch(failed);
  renderDeployments();
}

function failed(err) {
  if (err instanceof AuthError) hooks.refused(err);
  else console.error(err);
}

// --- rendering ------------------------------------------------------------------------
// Each deployment is first turned into a plain model holding every text it shows; the
// model is also the signature that decides whether its rows are rebuilt.

export function renderDeployments() {
  const list = [...known.values()].sort((a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1));
  const more = olderLoaded ? olderNext !== null : firstNext !== null;
  $("deployment-count").textContent = list.length ? (more ? `latest ${list.length}` : String(list.length)) : "";
  $("deployments-empty").hidden = list.length > 0;
  $("deployments").hidden = list.length === 0;
  $("older").hidden = !more;
  const statuses = agentStatus();
  const models = list.map((d) => deploymentModel(d, statuses));
  reconcile($("deployments"), models, (m) => m.id, (m) => JSON.stringify(m), deploymentBody);
}

function countsText(counts) {
  return COUNT_ORDER.filter((s) => counts[s] > 0).map((s) => `${counts[s]} ${s}`).join(" · ");
}

function deploymentModel(d, statuses) {
  const isOpen = open?.id === d.id;
  const view = isOpen ? open.view : null;
  // The open deployment's own read is at least as fresh as the list's.
  const status = view?.status ?? d.status;
  const finishedAt = view ? view.finishedAt : d.finishedAt;
  let counts = d.stepCounts;
  if (view) {
    counts = {};
    for (const s of view.steps) counts[s.status] = (counts[s.status] ?? 0) + 1;
  }
  return {
    id: d.id,
    name: d.name,
    status,
    agents: `${d.agentCount} agent${d.agentCount === 1 ? "" : "s"}`,
    counts: countsText(counts),
    age: ago(d.createdAt),
    created: when(d.createdAt),
    duration: duration(d.createdAt, finishedAt),
    open: isOpen,
    error: isOpen ? open.error : null,
    detail: view ? detailModel(view, statuses, selectedStepId()) : null,
  };
}

function deploymentBody(m) {
  const body = el("tbody", { class: `deployment${m.open ? " open" : ""}`, "data-deployment": m.id, "data-status": m.status });
  body.append(
    el("tr", { class: "dep-row" },
      el("td", { class: "name" },
        el("button", {
          type: "button", class: "link dep-open", "aria-expanded": String(m.open),
          title: m.open ? "Hide its steps" : "Show its steps", onclick: () => toggle(m.id),
        }, m.name),
        el("span", { class: "id mono", text: m.id.slice(0, 8), title: m.id })),
      el("td", { class: "muted agents", text: m.agents }),
      el("td", { class: "status" }, badge(m.status)),
      el("td", { class: "counts", text: m.counts }),
      el("td", { class: "age", title: m.created }, m.age),
      el("td", { class: "mono duration", text: m.duration }),
    ),
  );
  if (!m.open) return body;
  if (m.error) body.append(el("tr", { class: "note-row" }, el("td", { colspan: 6, class: "log-error", text: m.error })));
  else if (!m.detail) body.append(el("tr", { class: "note-row" }, el("td", { colspan: 6, class: "muted", text: "Loading its steps…" })));
  if (m.detail) body.append(...detailRows(m, selectStep));
  return body;
}
