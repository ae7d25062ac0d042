// http-check / wait-for-url: polls a URL until it answers with the expected status
// (and body text), or fails at the overall deadline. docs/plugins.md §Shipped plug-ins.
//
// Exit codes: 0 the URL answered as expected; 1 the deadline passed; 2 invalid inputs;
// 143 stopped by SIGTERM (cancel or the step's timeout).
import { readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

// One attempt never waits longer than this, so a server that accepts the connection
// and then hangs costs one slot, not the whole deadline.
const ATTEMPT_MAX_MS = 10_000;
// `contains` is searched in the first MiB only: a health page is small, and a huge
// body must not exhaust the agent's memory.
const BODY_MAX_BYTES = 1024 * 1024;

class InputError extends Error {}

function readInputs() {
  const file = process.env.OUTPOST_INPUTS;
  if (!file) throw new InputError("OUTPOST_INPUTS is not set: run this step through an Outpost agent, or point OUTPOST_INPUTS at a JSON file of inputs");
  let inputs;
  try {
    inputs = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    // Not the parser's message: it quotes the file's text, and inputs may hold secrets.
    throw new InputError(`cannot read the inputs file ${file}${e.code ? ` (${e.code})` : ": not valid JSON"}`);
  }
  if (inputs === null || typeof inputs !== "object" || Array.isArray(inputs)) throw new InputError("the inputs file does not hold a JSON object");
  return inputs;
}

// Numbers may arrive as text when given by an expression (`"${{ deployment.properties.t }}"`).
function number(inputs, name, fallback, { min, integer = false }) {
  const raw = inputs[name] ?? fallback;
  const n = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : raw;
  if (typeof n !== "number" || !Number.isFinite(n) || n < min || (integer && !Number.isInteger(n)))
    throw new InputError(`${name} must be ${integer ? "an integer" : "a number"} ≥ ${min}, not ${JSON.stringify(raw)}`);
  return n;
}

function parseInputs(inputs) {
  if (typeof inputs.url !== "string" || inputs.url.trim() === "") throw new InputError("url is required");
  let url;
  try {
    url = new URL(inputs.url.trim());
  } catch {
    throw new InputError(`url is not a valid URL: ${JSON.stringify(inputs.url)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new InputError(`url must be http:// or https://, not ${url.protocol}`);
  const contains = inputs.contains;
  if (contains !== undefined && contains !== null && typeof contains !== "string") throw new InputError("contains must be a string");
  return {
    url,
    expectStatus: number(inputs, "expectStatus", 200, { min: 100, integer: true }),
    timeoutMs: number(inputs, "timeoutSeconds", 60, { min: 0.001 }) * 1000,
    // A floor, so a refusing server is not hammered in a tight loop.
    intervalMs: number(inputs, "intervalSeconds", 2, { min: 0.1 }) * 1000,
    contains: contains === "" || contains === null ? undefined : contains,
  };
}

// fetch refuses URLs carrying user:password, so those become a Basic header; the
// printed URL never shows the password.
function requestOf(url) {
  const target = new URL(url);
  const headers = { "user-agent": "outpost-http-check/1.0" };
  if (target.username || target.password) {
    const user = decodeURIComponent(target.username);
    const password = decodeURIComponent(target.password);
    headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
    target.username = "";
    target.password = "";
  }
  const shown = new URL(url);
  if (shown.password) shown.password = "***";
  return { target: target.href, headers, shown: shown.href };
}

const seconds = (ms) => `${Number((ms / 1000).toFixed(ms < 10_000 ? 2 : 1))} s`;

// Reads until `needle` is found or BODY_MAX_BYTES have been read. The decoder keeps a
// multi-byte character split across chunks whole.
async function bodyContains(res, needle) {
  if (!res.body) return false;
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let bytes = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return (text + decoder.decode()).includes(needle);
      const room = BODY_MAX_BYTES - bytes;
      bytes += value.byteLength;
      text += decoder.decode(value.subarray(0, room), { stream: true });
      if (text.includes(needle)) return true;
      if (bytes >= BODY_MAX_BYTES) return false;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// The network error's own words ("connect ECONNREFUSED 127.0.0.1:9"), not fetch's
// generic "fetch failed".
function describeError(e) {
  const cause = e?.cause;
  if (cause?.message) return cause.code && !cause.message.includes(cause.code) ? `${cause.code}: ${cause.message}` : cause.message;
  return e?.message ?? String(e);
}

// One request, bounded by budgetMs and by `stop`. Returns {status?, ok, detail} or
// null when stopped.
async function attempt(req, opts, budgetMs, stop) {
  const timeout = AbortSignal.timeout(budgetMs);
  const signal = AbortSignal.any([timeout, stop]);
  try {
    // Redirects are not followed: a health URL that redirects (to a login page, say)
    // is reported as the 3xx it is rather than judged by where it leads.
    const res = await fetch(req.target, { headers: req.headers, redirect: "manual", signal });
    let detail = `${res.status}${res.statusText ? ` ${res.statusText}` : ""}`;
    if (res.status !== opts.expectStatus) {
      await res.body?.cancel().catch(() => {});
      return { status: res.status, ok: false, detail: `${detail} (expected ${opts.expectStatus})` };
    }
    if (opts.contains === undefined) {
      await res.body?.cancel().catch(() => {});
      return { status: res.status, ok: true, detail };
    }
    const found = await bodyContains(res, opts.contains);
    detail += found ? `, body contains ${JSON.stringify(opts.contains)}` : `, body does not contain ${JSON.stringify(opts.contains)}`;
    return { status: res.status, ok: found, detail };
  } catch (e) {
    if (stop.aborted) return null;
    if (timeout.aborted) return { ok: false, detail: `no answer within ${seconds(budgetMs)}` };
    return { ok: false, detail: `error: ${describeError(e)}` };
  }
}

function writeOutputs(outputs) {
  const file = process.env.OUTPOST_OUTPUTS;
  if (!file) return; // run by hand: nothing records outputs
  try {
    writeFileSync(file, JSON.stringify(outputs) + "\n");
  } catch (e) {
    console.error(`wait-for-url: cannot write the outputs file ${file}: ${e.message}`);
  }
}

async function main() {
  let opts;
  try {
    opts = parseInputs(readInputs());
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    console.error(`wait-for-url: ${e.message}`);
    return 2;
  }

  // SIGTERM (cancel, timeout) aborts the request or pause in progress, so the step
  // ends at once instead of when its SIGKILL comes.
  const stopper = new AbortController();
  let stoppedBy = null;
  for (const sig of ["SIGTERM", "SIGINT"])
    process.on(sig, () => {
      stoppedBy = sig;
      stopper.abort();
    });

  const req = requestOf(opts.url);
  const wanted = `${opts.expectStatus}${opts.contains === undefined ? "" : ` with ${JSON.stringify(opts.contains)} in the body`}`;
  console.log(`waiting up to ${seconds(opts.timeoutMs)} for ${req.shown} to answer ${wanted}`);

  const started = performance.now();
  const deadline = started + opts.timeoutMs;
  let attempts = 0;
  let lastStatus = null;
  let last = "";
  const finish = (code, line) => {
    (code === 0 ? console.log : console.error)(line);
    writeOutputs({ status: lastStatus === null ? "" : String(lastStatus), attempts: String(attempts), elapsedMs: String(Math.round(performance.now() - started)) });
    return code;
  };
  const stopped = () => finish(143, `stopped by ${stoppedBy} after ${attempts} attempt${attempts === 1 ? "" : "s"}${last ? `; last: ${last}` : ""}`);

  for (;;) {
    const t0 = performance.now();
    const budget = Math.max(1, Math.round(Math.min(ATTEMPT_MAX_MS, deadline - t0))); // AbortSignal.timeout wants whole ms
    attempts++;
    const r = await attempt(req, opts, budget, stopper.signal);
    if (r === null) return stopped();
    if (r.status !== undefined) lastStatus = r.status;
    last = r.detail;
    console.log(`attempt ${attempts}: ${r.detail} (${Math.round(performance.now() - t0)} ms)`);
    if (r.ok) return finish(0, `OK: ${req.shown} answered ${wanted} after ${attempts} attempt${attempts === 1 ? "" : "s"} in ${seconds(performance.now() - started)}`);

    const pause = Math.min(opts.intervalMs, deadline - performance.now());
    if (pause > 0) await sleep(pause, undefined, { signal: stopper.signal }).catch(() => {});
    if (stopper.signal.aborted) return stopped();
    // No attempt starts at (or past) the deadline: it would have no time to answer.
    if (deadline - performance.now() < 1)
      return finish(1, `FAILED: ${req.shown} did not answer ${wanted} within ${seconds(opts.timeoutMs)} (${attempts} attempt${attempts === 1 ? "" : "s"}); last: ${last}`);
  }
}

// exit() rather than letting the loop drain: an idle keep-alive socket or a late timer
// must not hold a stopped step open.
process.exit(await main());
