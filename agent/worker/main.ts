// The worker process, forked by the monitor: opens the journal, connects out
// (WebSocket for notifications, HTTPS for commands, reports and logs), runs
// steps. Exits when the monitor goes away (IPC disconnect) or on SIGTERM;
// running steps are detached and survive it, to be re-attached next start.
// Exits with EXIT_REVOKED when the server says the agent is revoked (§Revoke).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { PluginCache } from "../plugins/plugin-cache.ts";
import { parseArgs } from "node:util";
import { parseConcurrency, parseRetentionDays } from "../args.ts";
import { EXIT_RESTART, EXIT_REVOKED, EXIT_UPGRADE, REVOKED_MESSAGE } from "../errors.ts";
import { upgradeFlow } from "./upgrade-flow.ts";
import { Controls } from "./controls.ts";
import { AGENT_UMASK, DIR_MODE, parseUmask, secureHome } from "../home.ts";
import { createLogger, DEFAULT_LOG_LEVEL } from "../log.ts";
import { describeRoute, proxyPolicy } from "../proxy.ts";
import { homePaths, readCredential, readSettings, removePidFile, writePidFile } from "../settings.ts";
import { channelUrl } from "../url-policy.ts";
import { AGENT_VERSION } from "../version.ts";
import { ApiClient } from "./api-client.ts";
import { Channel } from "./channel.ts";
import { CommandPuller } from "./command-puller.ts";
import { DeploymentRunner } from "./deployment-runner.ts";
import { Journal } from "./journal.ts";
import { LogUploader } from "./log-uploader.ts";
import { Pruner, RETENTION_DAYS_DEFAULT } from "./pruner.ts";
import { ReportSender } from "./report-sender.ts";
import { applyResync } from "./resync.ts";
import { Scheduler } from "./scheduler.ts";

const log = createLogger("worker");

async function main(): Promise<void> {
  // Private files from here on, even when started by hand; the umask we were given is
  // the steps' unless the monitor passes the one `outpost-agent run` started with.
  const inheritedUmask = process.umask(AGENT_UMASK);
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { home: { type: "string" }, concurrency: { type: "string" }, "retention-days": { type: "string" }, "step-umask": { type: "string" } },
    strict: true,
  });
  if (!values.home) throw new Error("worker: missing --home");
  const stepUmask = values["step-umask"] === undefined ? inheritedUmask : parseUmask(values["step-umask"]);
  if (stepUmask === null) throw new Error(`worker: invalid --step-umask ${JSON.stringify(values["step-umask"])}`);
  const paths = homePaths(values.home);
  secureHome(paths.home);
  writePidFile(paths.workerPid);
  const settings = readSettings(paths.home);
  const credential = readCredential(paths.home);
  // settings.json's proxy, else HTTPS_PROXY / HTTP_PROXY / NO_PROXY; one we cannot use
  // stops the start (going direct instead would go around it).
  const proxy = proxyPolicy(settings.proxy, process.env);
  const maxConcurrent = parseConcurrency(values.concurrency) ?? settings.maxConcurrentDeployments;
  const retentionDays = parseRetentionDays(values["retention-days"]) ?? settings.retentionDays ?? RETENTION_DAYS_DEFAULT;
  mkdirSync(paths.steps, { recursive: true, mode: DIR_MODE });
  mkdirSync(paths.work, { recursive: true, mode: DIR_MODE });
  const journal = await Journal.open(paths.journal);
  log.info(
    `started (pid ${process.pid}, agent ${settings.name}, server ${settings.server}, up to ${maxConcurrent} concurrent deployments, ended deployments kept ${retentionDays} day(s))`,
  );
  log.info(`connections to ${settings.server}: ${describeRoute(proxy, new URL(settings.server))}`);

  // Only the server's explicit revoked answer stops the agent: every later request
  // would be refused too (docs/protocol.md §Revoke). Other 401s are retried.
  const api = new ApiClient(settings.server, credential, { onRevoked: (e) => revoked(e.message), proxy });
  let sender: ReportSender | null = null;
  const uploader = new LogUploader({ journal, api, stepsDir: paths.steps, log: log.child("log"), onDelivered: () => sender?.kick() });
  sender = new ReportSender({
    journal,
    api,
    log: log.child("reports"),
    isLogDelivered: async (stepId) => uploader.isDelivered(await journal.step(stepId)),
  });
  const plugins = new PluginCache({ dir: join(paths.home, "plugins"), download: (id, version) => api.pluginPackage(id, version), log: log.child("plugins") });
  const runner = new DeploymentRunner({
    journal,
    api,
    plugins,
    stepsDir: paths.steps,
    workDir: paths.work,
    stepUmask,
    log: log.child("run"),
    onStepStarted: (stepId) => {
      sender!.kick();
      uploader.watch(stepId);
    },
    onStepEnded: (stepId) => {
      uploader.stepEnded(stepId);
      sender!.kick();
    },
  });
  const scheduler = new Scheduler({ journal, runner, maxConcurrent, log: log.child("scheduler") });
  // docs/agent-lifecycle.md §Config, §Restart. (channel and shutdown are defined below;
  // these callbacks run only once the worker is up.)
  const upgrades = upgradeFlow({
    home: paths.home,
    api,
    journal,
    send: (m) => channel.send(m),
    switchTo: (version) => void shutdown(`switching to version ${version}`, EXIT_UPGRADE),
    runningVersion: AGENT_VERSION,
    log: log.child("upgrade"),
  });
  const controls = new Controls({
    journal,
    defaults: { concurrency: maxConcurrent, logLevel: DEFAULT_LOG_LEVEL },
    setConcurrency: (n) => scheduler.setMaxConcurrent(n),
    tellServer: (config) => void channel.send({ type: "status", config }),
    onRestart: () => void shutdown("restart requested by the server", EXIT_RESTART),
    onUpgrade: (req) => upgrades.start(req),
    log: log.child("controls"),
  });
  const pruner = new Pruner({ journal, stepsDir: paths.steps, workDir: paths.work, retentionDays, log: log.child("prune") });
  const puller = new CommandPuller({ journal, api, log: log.child("pull"), onStored: () => {
      scheduler.kick();
      runner.checkCancels().catch((e) => log.error("cannot check stored commands for cancels", e));
      controls.check().catch((e) => log.error("cannot apply the server's config or restart request", e));
    }, onReportsQueued: () => sender!.kick() });
  // One resync at a time, in welcome order; a failed one drops the connection so
  // that the next connection's hello starts it over.
  let resyncs: Promise<void> = Promise.resolve();
  const channel: Channel = new Channel({
    url: channelUrl(settings.server),
    proxy,
    credential,
    log: log.child("channel"),
    hello: async () => ({
      type: "hello",
      version: AGENT_VERSION,
      lastSeq: await journal.lastSeq(),
      running: (await journal.runningStepIds()).slice(0, 1000),
      reports: await journal.outboxIds(1000),
      pendingReports: await journal.outboxCount(),
      config: controls.applied,
    }),
    onWelcome: (welcome, hello) => {
      resyncs = resyncs.then(() =>
        applyResync({ journal, log: log.child("resync"), onSettled: () => sender!.retryNow(), onHead: (h) => puller.notifyHead(h), onLogResend: (id) => uploader.watch(id) }, hello, welcome).then(
          () => upgrades.resynced(),
          (e) => {
            log.error("resync failed; reconnecting to start it over", e);
            sender!.retryNow();
            puller.notifyHead(welcome.head);
            channel.reconnect();
          },
        ),
      );
    },
    onHead: (head) => puller.notifyHead(head),
    // The report sender is woken by the resync instead, once the reports the server
    // already applied are out of the outbox (so they are not posted again).
    onPong: () => upgrades.heartbeatAnswered(),
    onUp: () => {
      upgrades.channelUp();
      puller.setChannelUp(true);
      uploader.retryNow();
    },
    onDown: () => puller.setChannelUp(false),
    onRevoked: (why) => revoked(why),
  });

  let stopping = false;
  const shutdown = async (why: string, exitCode = 0) => {
    if (stopping) return;
    stopping = true;
    if (exitCode === 0 || exitCode === EXIT_RESTART || exitCode === EXIT_UPGRADE) log.info(`stopping (${why}); running steps continue and are re-attached by the next worker`);
    setTimeout(() => {
      log.error("did not stop within 8 s; exiting anyway");
      process.exit(exitCode === 0 ? 1 : exitCode); // a revoked worker must still say so to the monitor
    }, 8_000).unref();
    try {
      scheduler.stop();
      pruner.stop();
      channel.stop();
      uploader.stop();
      sender!.stop();
      await puller.stop();
      await journal.close();
      removePidFile(paths.workerPid, process.pid);
    } catch (e) {
      log.error("stopping failed", e);
      process.exit(exitCode === 0 ? 1 : exitCode);
    }
    process.exit(exitCode);
  };
  // The server already ended this agent's open work (its steps `canceled`, reason
  // "agent revoked"); step processes still running are left alone — killing them
  // could leave a half-done deployment behind, and nobody is left to report them.
  function revoked(why: string): void {
    if (stopping) return;
    log.error(`${REVOKED_MESSAGE} (${why}); stopping for good, running step processes are left alone`);
    void shutdown("credential refused", EXIT_REVOKED);
  }
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  // Under the monitor, Ctrl-C reaches both; the monitor decides and sends SIGTERM.
  process.on("SIGINT", () => {
    if (!process.connected) void shutdown("SIGINT");
  });
  process.on("disconnect", () => void shutdown("monitor gone"));
  if (process.send === undefined) log.warn("not started by a monitor: nobody will restart this worker if it dies");
  else if (!process.connected) return void shutdown("monitor gone");

  await upgrades.init();
  await controls.start();
  await uploader.resumePending();
  pruner.start();
  scheduler.kick();
  sender.kick();
  await puller.start();
  channel.start();
}

main().catch((e) => {
  log.error("worker failed to start", e);
  process.exit(1);
});
