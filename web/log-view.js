// The step log panel. It fetches only what is new: it keeps the number of bytes
// received so far and asks for `?offset=<received>`; one streaming TextDecoder turns
// the bytes into text, so a UTF-8 character cut between two ranges comes out whole.
// Once the server says the log is complete (X-Log-Complete: true) and every byte up
// to X-Log-Size is here, the log is not asked for again.
import { FINAL_STEP_STATUSES } from "./vocabulary.js";
import { enc, request } from "./api.js";
import { $, bytes, el } from "./dom.js";

const TERMINAL = new Set(FINAL_STEP_STATUSES);
// The server answers at most 1 MiB per request. A step's log may reach 1 GiB: the page
// shows its first SHOW_MAX_BYTES and says how to get the rest (a browser tab holding a
// gigabyte of text is no use to anyone).
const MAX_REQUESTS_PER_POLL = 4;
export const SHOW_MAX_BYTES = 4 * 1024 * 1024;

let log = null; // { deploymentId, step, received, size, complete, done, decoder, inflight, error }

export const selectedStepId = () => log?.step.id ?? null;

export function openLog(deployment, step) {
  log = { deploymentId: deployment.id, step, received: 0, size: null, complete: false, done: false, cut: false, decoder: new TextDecoder(), inflight: null, error: null };
  $("log-title").textContent = `${deployment.name} › ${step.name}`;
  const pre = $("log-text");
  pre.replaceChildren();
  pre.scrollTop = 0;
  $("log-panel").hidden = false;
  $("log-panel").dataset.complete = "false";
  showMeta();
  return pollLog();
}

export function closeLog() {
  log = null;
  $("log-panel").hidden = true;
  $("log-text").replaceChildren();
}

// The step as the latest poll of its deployment shows it (for the status line).
export function updateStep(step) {
  if (!log || log.step.id !== step.id) return;
  log.step = step;
  showMeta();
}

// Fetches what is new, unless a fetch is already under way (two at once would ask
// for the same offset and show the bytes twice) or the log is complete.
export function pollLog() {
  const current = log;
  if (!current || current.done) return Promise.resolve();
  if (!current.inflight) current.inflight = fetchNew(current).finally(() => { current.inflight = null; });
  return current.inflight;
}

async function fetchNew(l) {
  try {
    for (let i = 0; i < MAX_REQUESTS_PER_POLL && !l.done; i++) {
      const limit = Math.min(1024 * 1024, SHOW_MAX_BYTES - l.received);
      const path = `/api/v1/deployments/${enc(l.deploymentId)}/steps/${enc(l.step.id)}/log?offset=${l.received}&limit=${limit}`;
      const res = await request("GET", path, { raw: true });
      if (log !== l) return;
      if (res.status === 416) {
        // The server holds less than we have (its state was reset): start over.
        restart(l);
        return;
      }
      const chunk = new Uint8Array(await res.arrayBuffer());
      if (log !== l) return;
      l.size = Number(res.headers.get("x-log-size"));
      l.complete = res.headers.get("x-log-complete") === "true";
      l.received += chunk.byteLength;
      append(l.decoder.decode(chunk, { stream: true }));
      if (l.complete && l.received >= l.size) {
        append(l.decoder.decode()); // the end: a character still cut now never will be whole
        l.done = true;
      } else if (l.received >= SHOW_MAX_BYTES) {
        l.cut = true; // the rest is for the API: the page asks no more
        l.done = true;
      } else if (chunk.byteLength === 0 || l.received >= l.size) {
        break; // everything there is for now; the next poll asks again
      }
    }
    l.error = null;
  } catch (err) {
    if (log !== l) return;
    l.error = err;
    throw err;
  } finally {
    if (log === l) showMeta();
  }
}

function restart(l) {
  l.received = 0;
  l.size = null;
  l.complete = false;
  l.cut = false;
  l.done = false;
  l.decoder = new TextDecoder();
  $("log-text").replaceChildren();
}

function append(text) {
  if (!text) return;
  const pre = $("log-text");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.append(text);
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function showMeta() {
  const l = log;
  const pre = $("log-text");
  const ended = TERMINAL.has(l.step.status);
  pre.dataset.placeholder = l.size === null ? "loading…" : ended ? "(no output)" : "(no output yet)";
  pre.dataset.bytes = String(l.received);
  $("log-panel").dataset.complete = String(l.done && !l.cut);
  $("log-panel").dataset.cut = String(l.cut);
  const exit = l.step.exitCode === null ? "" : ` · exit ${l.step.exitCode}`;
  const size = l.size === null ? "" : l.received < l.size ? ` · ${bytes(l.received)} of ${bytes(l.size)}` : ` · ${bytes(l.received)}${l.done ? "" : " so far"}`;
  const meta = $("log-meta");
  meta.replaceChildren(`${l.step.agent} · ${l.step.status}${exit}${size}`);
  if (l.cut) {
    const path = `GET /api/v1/deployments/${l.deploymentId}/steps/${l.step.id}/log?offset=${l.received}`;
    meta.append(el("span", { class: "log-cut", text: ` · the page shows the first ${bytes(SHOW_MAX_BYTES)}; the rest: ${path} (docs/api.md)` }));
  }
  if (l.error) meta.append(el("span", { class: "log-error", text: ` · Cannot load the log: ${l.error.message}` }));
}
