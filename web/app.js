// Outpost dashboard: agents, deployments and their logs, polled from the management
// API; and what an admin does there: deploy (to agents or tags, with properties, a
// rollout, shell and plug-in steps), cancel a deployment, tag agents, revoke agents,
// upload and delete plug-ins, keep secrets, create registration and API tokens, set an
// agent's concurrency and log level, restart it, upload and pin agent versions, upgrade
// one agent or many in waves (and follow the upgrades and rollouts). No
// framework and no build step; ES modules only. Every piece of server data goes into
// the page as text (dom.js), never as markup.
import { initAgents, renderAgents, resetAgents } from "./agents.js";
import { initAgentVersions, loadAgentVersions, resetAgentVersions } from "./agent-versions.js";
import { initUpgradeRollouts, loadUpgradeRollouts, pollUpgradeRollouts, refreshUpgradeVersions, resetUpgradeRollouts } from "./upgrade-rollouts.js";
import { initInstallCommand, refreshInstallCommand, resetInstallCommand } from "./install-command.js";
import { AuthError, forgetToken, get, setToken, storedToken, storeToken } from "./api.js";
import { applyFirstPage, firstPagePath, initDeployments, openDeployment, pollOpen, renderDeployments, resetDeployments } from "./deployments.js";
import { $, clock } from "./dom.js";
import { closeLog, pollLog } from "./log-view.js";
import { closeForm, initNewDeployment, refreshStepChoices, renderAgentChoices } from "./new-deployment.js";
import { initPlugins, loadPlugins, resetPlugins } from "./plugins.js";
import { initSecrets, loadSecrets, resetSecrets } from "./secrets.js";
import { initStepEditor } from "./step-editor.js";
import { initTokens, loadTokens, resetTokens, roleKnown } from "./tokens.js";

const REFRESH_MS = 2000;
const HIDDEN_REFRESH_MS = 15000;
// The plug-ins, secrets and agent versions change only when someone uploads or saves
// one: they are read at sign-in, after this page changes them, when the deployment form
// opens, and at most this often otherwise (the upgrade rollouts too, but at every poll
// while one runs).
const PANELS_REFRESH_MS = 30000;

let token = null;
let timer = null;
let tokenAccepted = false;
let panelsReadAt = 0;
let generation = 0; // bumped on sign-out (and on each restart of the poll loop) so a poll already in flight cannot re-render

// --- token --------------------------------------------------------------------

// A token in the fragment (as printed by `npm start`) wins; the fragment never
// reaches the server or its logs, and is removed from the address bar at once so
// it does not linger in history or get copied along with the URL. It is kept for
// this tab only.
function takeTokenFromUrl() {
  const params = new URLSearchParams(location.hash.slice(1));
  const fromUrl = params.get("token");
  if (fromUrl === null) return;
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  if (fromUrl) storeToken(fromUrl, false);
}

function showLogin(message) {
  generation++;
  clearTimeout(timer);
  token = null;
  setToken(null);
  resetDeployments();
  resetAgents();
  resetInstallCommand();
  resetAgentVersions();
  resetUpgradeRollouts();
  resetTokens();
  resetPlugins();
  resetSecrets();
  panelsReadAt = 0;
  closeForm();
  $("dashboard").hidden = true;
  $("signout").hidden = true;
  $("role").hidden = true;
  delete document.body.dataset.role;
  $("login").hidden = false;
  $("login-message").textContent = message || "";
  $("login-message").hidden = !message;
  setConn("", "");
  $("token-input").focus();
}

function showDashboard(t) {
  token = t;
  tokenAccepted = false;
  setToken(t);
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("signout").hidden = false;
  restart();
}

// The server refused the token (401) or this address (429): forget it, ask again.
function refused(err) {
  forgetToken();
  showLogin(`${err.message} Enter a valid API token.`);
}

function showRole(role) {
  document.body.dataset.role = role;
  const r = $("role");
  r.textContent = role === "admin" ? "admin" : "read-only";
  r.title = role === "admin" ? "This token may change things" : "This token may only read: changes will be refused";
  r.hidden = false;
}

// --- polling ------------------------------------------------------------------------
// Every 2 s (15 s in a background tab): the agents, the first page of deployments, the
// open deployment and the open log's new bytes. Nothing else is read again.

function restart() {
  clearTimeout(timer);
  refresh(++generation); // the new generation retires the poll loop already scheduled
}

async function refresh(gen) {
  try {
    // Until the token has been accepted once, it is tried with one request: a wrong
    // token then costs one failed attempt (the server limits them per address), not three.
    const agents = get("/api/v1/agents");
    if (!tokenAccepted) {
      await agents;
      if (gen !== generation) return;
      tokenAccepted = true;
    }
    if (Date.now() - panelsReadAt > PANELS_REFRESH_MS) loadPanels(gen);
    const [a, page] = await Promise.all([agents, get(firstPagePath()), roleKnown() ? null : loadTokens()]);
    if (gen !== generation) return;
    renderAgents(a.agents);
    renderAgentChoices();
    // A running upgrade rollout is read again (its panel says when it cannot be).
    pollUpgradeRollouts().catch((err) => gen === generation && err instanceof AuthError && refused(err));
    applyFirstPage(page);
    await pollOpen();
    if (gen !== generation) return;
    renderDeployments();
    // A log that cannot be read says so in its panel; the rest of the page is fine.
    await pollLog().catch((err) => {
      if (err instanceof AuthError) throw err;
      console.error(err);
    });
    if (gen !== generation) return;
    setConn("ok", `Updated ${clock(new Date())}`);
  } catch (err) {
    if (gen !== generation) return;
    if (err instanceof AuthError) return refused(err);
    // Keep the last good view on screen and say it is stale; the next poll retries.
    console.error(err);
    renderDeployments();
    setConn("error", `Cannot refresh: ${err.message}`);
  }
  // A background tab polls slowly; coming back to it refreshes at once (below).
  if (gen === generation) timer = setTimeout(() => refresh(gen), document.hidden ? HIDDEN_REFRESH_MS : REFRESH_MS);
}

// Each panel says in its own message line when it cannot be read; only a refused token
// concerns the whole page.
function loadPanels(gen = generation) {
  panelsReadAt = Date.now();
  Promise.all([loadPlugins(), loadSecrets(), loadAgentVersions(), loadUpgradeRollouts()]).catch((err) => {
    if (gen === generation && err instanceof AuthError) refused(err);
  });
}

function setConn(kind, text) {
  const c = $("conn");
  c.className = `conn ${kind}`;
  c.textContent = text;
}

// --- start ------------------------------------------------------------------------

const hooks = { refused, changed: () => token && restart() };
initAgents(hooks);
initInstallCommand({ refused });
initAgentVersions({ refused, changed: () => { refreshInstallCommand(); refreshUpgradeVersions(); } });
initUpgradeRollouts({ refused });
initDeployments(hooks);
initTokens({ refused, role: showRole });
initPlugins({ refused, changed: refreshStepChoices });
initSecrets({ refused, changed: refreshStepChoices });
initStepEditor({ refused });
initNewDeployment({
  refused,
  opened: () => token && loadPanels(),
  created: (id) => {
    openDeployment(id);
    restart();
  },
});

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token-input").value.trim();
  if (!t) return;
  storeToken(t, $("remember").checked);
  $("token-input").value = "";
  showDashboard(t);
});
$("signout").addEventListener("click", () => {
  forgetToken();
  showLogin("");
});
$("log-close").addEventListener("click", () => {
  closeLog();
  renderDeployments();
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && token) restart();
});
window.addEventListener("hashchange", () => {
  takeTokenFromUrl();
  const t = storedToken();
  if (t && t !== token) showDashboard(t);
});

takeTokenFromUrl();
const stored = storedToken();
if (stored) showDashboard(stored);
else showLogin("");
