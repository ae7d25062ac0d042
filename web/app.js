// Outpost dashboard: a read-only view of agents and deployments, polled from the
// management API. No framework and no build step. Every piece of server data goes
// into the page through textContent (the el() helper), never through innerHTML.

const TOKEN_KEY = "outpost.adminToken";
const REFRESH_MS = 2000;
const HIDDEN_REFRESH_MS = 15000;
const MAX_DEPLOYMENTS = 25;
const TERMINAL = new Set(["succeeded", "failed", "interrupted", "skipped", "canceled"]);

const $ = (id) => document.getElementById(id);

let token = null;
let timer = null;
let generation = 0; // bumped on sign-out so a poll already in flight cannot re-render
let selected = null; // { deploymentId, stepId }
let lastLog = { stepId: null, text: null, final: false };

class Unauthorized extends Error {}

// --- token --------------------------------------------------------------------

// A token in the fragment (as printed by `npm start`) wins; the fragment never
// reaches the server or its logs, and is removed from the address bar at once so
// it does not linger in history or get copied along with the URL.
function takeTokenFromUrl() {
  const params = new URLSearchParams(location.hash.slice(1));
  const fromUrl = params.get("token");
  if (fromUrl === null) return;
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  if (fromUrl) localStorage.setItem(TOKEN_KEY, fromUrl);
}

function showLogin(message) {
  generation++;
  clearTimeout(timer);
  token = null;
  $("dashboard").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("login-message").textContent = message || "";
  $("login-message").hidden = !message;
  setConn("", "");
  $("token-input").focus();
}

function showDashboard(t) {
  token = t;
  generation++;
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("signout").hidden = false;
  refresh(generation);
}

// --- API ----------------------------------------------------------------------

async function api(path, as = "json") {
  const res = await fetch(path, { headers: { authorization: `Bearer ${token}` }, cache: "no-store" });
  if (res.status === 401) throw new Unauthorized("The server refused the token (HTTP 401).");
  if (!res.ok) {
    const body = await res.text();
    throw new Error(`${path}: HTTP ${res.status} ${body.slice(0, 200)}`);
  }
  return as === "json" ? res.json() : res.text();
}

function refused(err) {
  localStorage.removeItem(TOKEN_KEY);
  closeLog();
  showLogin(`${err.message} Enter a valid admin token.`);
}

async function refresh(gen) {
  try {
    const [a, d] = await Promise.all([api("/api/v1/agents"), api(`/api/v1/deployments?limit=${MAX_DEPLOYMENTS}`)]);
    if (gen !== generation) return;
    renderAgents(a.agents);
    renderDeployments(d.deployments.slice(0, MAX_DEPLOYMENTS), new Map(a.agents.map((x) => [x.name, x.status])));
    await refreshLog(d.deployments, gen);
    setConn("ok", `Updated ${clock(new Date())}`);
  } catch (err) {
    if (gen !== generation) return;
    if (err instanceof Unauthorized) return refused(err);
    // Keep the last good view on screen and say it is stale; the next poll retries.
    console.error(err);
    setConn("error", `Cannot refresh: ${err.message}`);
  }
  // A background tab polls slowly; coming back to it refreshes at once (below).
  if (gen === generation) timer = setTimeout(() => refresh(gen), document.hidden ? HIDDEN_REFRESH_MS : REFRESH_MS);
}

// --- rendering ----------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

const badge = (status) => el("span", { class: `badge s-${status}`, text: status });

function setConn(kind, text) {
  const c = $("conn");
  c.className = `conn ${kind}`;
  c.textContent = text;
}

function renderAgents(agents) {
  const sorted = [...agents].sort((x, y) => x.name.localeCompare(y.name));
  $("agent-count").textContent = agents.length ? `${agents.filter((a) => a.status === "online").length}/${agents.length} online` : "";
  $("agents-empty").hidden = agents.length > 0;
  $("agents").hidden = agents.length === 0;
  $("agents").tBodies[0].replaceChildren(
    ...sorted.map((a) =>
      el("tr", { "data-agent": a.name, "data-status": a.status },
        el("td", { class: "name", text: a.name }),
        el("td", { class: "status" }, badge(a.status)),
        el("td", { class: "mono", text: a.version ?? "—" }),
        el("td", { title: a.lastSeenAt ? new Date(a.lastSeenAt).toLocaleString() : "" }, a.lastSeenAt ? ago(a.lastSeenAt) : "never"),
      ),
    ),
  );
}

// agentStatus: name → online/offline, so a step still waiting on an agent that is
// offline says so (its work goes on, or will, once the agent is back).
function renderDeployments(deployments, agentStatus) {
  const table = $("deployments");
  $("deployment-count").textContent = deployments.length ? `latest ${deployments.length}` : "";
  $("deployments-empty").hidden = deployments.length > 0;
  table.hidden = deployments.length === 0;
  for (const body of [...table.tBodies]) body.remove();
  for (const d of deployments) {
    const body = el("tbody", { class: "deployment", "data-deployment": d.id, "data-status": d.status });
    body.append(
      el("tr", { class: "dep-row" },
        el("td", { class: "name" }, d.name, el("span", { class: "id mono", text: d.id.slice(0, 8), title: d.id })),
        el("td", { class: "muted", text: agentsOf(d) }),
        el("td", { class: "status" }, badge(d.status)),
        el("td"),
        el("td", { title: new Date(d.createdAt).toLocaleString() }, ago(d.createdAt)),
        el("td", { class: "mono", text: duration(d.createdAt, d.finishedAt) }),
      ),
    );
    for (const s of d.steps) {
      const isSelected = selected?.stepId === s.id;
      body.append(
        el("tr", { class: `step-row${isSelected ? " selected" : ""}`, "data-step": s.id, "data-status": s.status },
          el("td", { class: "step-name" },
            el("button", {
              type: "button", class: "link", "aria-pressed": String(isSelected), title: "Show this step's log",
              onclick: () => selectStep(d, s),
            }, s.name),
            s.reason ? el("span", { class: "reason", text: s.reason }) : null,
          ),
          el("td", { class: "muted" }, s.agent, stepWaitsOnOfflineAgent(s, agentStatus)
            ? el("span", { class: "agent-offline", text: "offline", title: "The agent is offline; the step's result arrives when it reconnects" })
            : null),
          el("td", { class: "status" }, badge(s.status)),
          el("td", { class: `mono exit${s.exitCode ? " nonzero" : ""}`, text: s.exitCode ?? "" }),
          el("td", { title: s.startedAt ? new Date(s.startedAt).toLocaleString() : "" }, s.startedAt ? clock(new Date(s.startedAt)) : "—"),
          el("td", { class: "mono", text: s.startedAt ? duration(s.startedAt, s.finishedAt) : "" }),
        ),
      );
    }
    table.append(body);
  }
}

const stepWaitsOnOfflineAgent = (s, agentStatus) =>
  (s.status === "running" || s.status === "pending") && agentStatus.get(s.agent) !== "online";

const agentsOf = (d) => [...new Set(d.steps.map((s) => s.agent))].join(", ");

// --- step log -------------------------------------------------------------------

function selectStep(d, s) {
  if (selected?.stepId === s.id) return closeLog();
  selected = { deploymentId: d.id, stepId: s.id };
  lastLog = { stepId: null, text: null, final: false };
  $("log-title").textContent = `${d.name} › ${s.name}`;
  $("log-meta").textContent = `${s.agent} · loading…`;
  $("log-text").textContent = "";
  $("log-panel").hidden = false;
  for (const row of document.querySelectorAll(".step-row")) {
    const on = row.dataset.step === s.id;
    row.classList.toggle("selected", on);
    row.querySelector("button").setAttribute("aria-pressed", String(on));
  }
  loadLog(s, generation).catch((err) => {
    if (err instanceof Unauthorized) refused(err);
    else showLogError(err);
  });
}

function closeLog() {
  selected = null;
  lastLog = { stepId: null, text: null, final: false };
  $("log-panel").hidden = true;
  for (const row of document.querySelectorAll(".step-row.selected")) {
    row.classList.remove("selected");
    row.querySelector("button").setAttribute("aria-pressed", "false");
  }
}

// Called on every poll: a finished step's log is fetched once more after it ends
// (the last chunk can land just after the status), then left alone.
async function refreshLog(deployments, gen) {
  if (!selected) return;
  const d = deployments.find((x) => x.id === selected.deploymentId);
  const s = d?.steps.find((x) => x.id === selected.stepId);
  if (!s) return closeLog();
  if (lastLog.stepId === s.id && lastLog.final) return;
  await loadLog(s, gen).catch(showLogError);
}

async function loadLog(s, gen) {
  const text = await api(`/api/v1/deployments/${encodeURIComponent(selected.deploymentId)}/steps/${encodeURIComponent(s.id)}/log`, "text");
  if (gen !== generation || selected?.stepId !== s.id) return;
  const pre = $("log-text");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  if (text !== lastLog.text) {
    pre.textContent = text;
    pre.classList.toggle("empty-log", text.length === 0);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }
  if (text.length === 0) pre.textContent = TERMINAL.has(s.status) ? "(no output)" : "(no output yet)";
  const exit = s.exitCode === null ? "" : ` · exit ${s.exitCode}`;
  $("log-meta").textContent = `${s.agent} · ${s.status}${exit} · ${bytes(new TextEncoder().encode(text).length)}`;
  lastLog = { stepId: s.id, text, final: TERMINAL.has(s.status) && lastLog.stepId === s.id && lastLog.text === text };
}

// A refused token is passed up (to refresh(), which shows the form); anything
// else is shown in the panel and the next poll tries again.
function showLogError(err) {
  if (err instanceof Unauthorized) throw err;
  console.error(err);
  $("log-meta").textContent = `Cannot load the log: ${err.message}`;
}

// --- formatting -----------------------------------------------------------------

function ago(iso) {
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

function duration(fromIso, toIso) {
  const ms = (toIso ? new Date(toIso) : new Date()).getTime() - new Date(fromIso).getTime();
  if (ms < 0) return "";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

const clock = (d) => d.toLocaleTimeString([], { hour12: false });
const bytes = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);

// --- start ------------------------------------------------------------------------

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token-input").value.trim();
  if (!t) return;
  localStorage.setItem(TOKEN_KEY, t);
  $("token-input").value = "";
  showDashboard(t);
});
$("signout").addEventListener("click", () => {
  localStorage.removeItem(TOKEN_KEY);
  closeLog();
  showLogin("");
});
$("log-close").addEventListener("click", closeLog);
document.addEventListener("visibilitychange", () => {
  if (document.hidden || !token) return;
  clearTimeout(timer);
  refresh(++generation); // the new generation retires the poll loop already scheduled
});
window.addEventListener("hashchange", () => {
  takeTokenFromUrl();
  const t = localStorage.getItem(TOKEN_KEY);
  if (t && t !== token) showDashboard(t);
});

takeTokenFromUrl();
const stored = localStorage.getItem(TOKEN_KEY);
if (stored) showDashboard(stored);
else showLogin("");
