// Issue 8, "done when": a plug-in packed with plain `tar czf` is uploaded, deployed with
// inputs drawn from deployment properties, agent properties and a secret; its output
// feeds a later shell step; and the secret's value is found nowhere in clear — not in
// D1 or the Durable Objects' state on disk, not in an API answer, not in the agent's
// home, not in a step log. Real server (wrangler dev), real agent processes.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";
import { readPid } from "../support/pids.ts";

const server = new TestServer();
const NAME = "plugin-agent";
const SECRET = `s3cr3t-${Math.random().toString(36).slice(2)}-value`;
const GO_FILE = join(server.work, "go");
let home: string;
let agent: Proc;

// Every file under `dir` whose bytes contain `needle` (SQLite files, WAL and journals included).
function filesContaining(dir: string, needle: string): string[] {
  const hits: string[] = [];
  const want = Buffer.from(needle);
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && readFileSync(p).includes(want)) hits.push(p);
    }
  };
  walk(dir);
  return hits;
}

function packPlugin(): Buffer {
  const dir = join(server.work, "hello-plugin");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "outpost-plugin.json"),
    JSON.stringify({
      id: "hello-tools",
      version: "1.0.0",
      name: "Hello tools",
      description: "greets someone",
      steps: [
        {
          name: "greet",
          inputs: [
            { name: "who", type: "string", required: true },
            { name: "times", type: "number", default: 2 },
            { name: "password", type: "string", secret: true },
          ],
          outputs: [{ name: "greeting" }],
          run: ["sh", "greet.sh"],
        },
        {
          name: "slow-echo",
          inputs: [{ name: "password", type: "string", secret: true, required: true }],
          outputs: [{ name: "echoed" }],
          run: ["sh", "slow.sh"],
        },
      ],
    }),
  );
  // Prints the secret on purpose: the agent must mask it before it leaves the step.
  writeFileSync(
    join(dir, "greet.sh"),
    [
      'echo "hello $OUTPOST_INPUT_WHO x$OUTPOST_INPUT_TIMES"',
      'echo "password is $OUTPOST_INPUT_PASSWORD"',
      'echo "inputs file mode $(stat -c %a "$OUTPOST_INPUTS")"',
      'echo "inputs: $(cat "$OUTPOST_INPUTS")"',
      'echo "cwd $(pwd)"',
      'echo "greeting=hello $OUTPOST_INPUT_WHO x$OUTPOST_INPUT_TIMES" > "$OUTPOST_OUTPUTS"',
      'echo "undeclared=dropped" >> "$OUTPOST_OUTPUTS"',
      'echo made > made-by-plugin.txt',
    ].join("\n") + "\n",
  );
  // Waits for a go file, then writes the secret into its output (JSON, so escaped).
  writeFileSync(join(dir, "slow.sh"), 'while [ ! -e "$GO_FILE" ]; do sleep 0.1; done\nprintf \'{"echoed":"%s"}\' "$OUTPOST_INPUT_PASSWORD" > "$OUTPOST_OUTPUTS"\necho "slow done $OUTPOST_INPUT_PASSWORD"\n');
  const out = join(server.work, "hello-tools.tgz");
  execFileSync("tar", ["czf", out, "-C", dir, "."]);
  return readFileSync(out);
}

beforeAll(async () => {
  await server.start();
  home = await server.registerAgent(NAME, server.base, ["--tags", "web,eu"]);
  process.env.GO_FILE = GO_FILE; // the agent's steps inherit it
  agent = server.startAgent(NAME, home);
  await server.waitAgentOnline(NAME);
});

afterAll(async () => {
  await agent?.stop();
  await server.stop();
});

describe("plug-in step with properties and a secret", () => {
  it("runs, feeds a later step, and the secret stays out of every store, answer and log", async () => {
    const pkg = packPlugin();
    const up = await fetch(`${server.base}/api/v1/plugins`, { method: "POST", body: new Uint8Array(pkg), headers: { authorization: `Bearer ${server.adminToken}` } });
    expect(up.status, await up.clone().text()).toBe(201);
    expect(await up.json()).toMatchObject({ id: "hello-tools", version: "1.0.0", steps: ["greet", "slow-echo"] });

    expect((await server.api("POST", "/api/v1/secrets", { name: "DB_PASSWORD", value: SECRET })).status).toBe(201);
    const agents = await server.api("GET", "/api/v1/agents");
    const me = agents.json.agents.find((a: { name: string }) => a.name === NAME);
    expect(me.tags).toEqual(["web", "eu"]);
    expect((await server.api("PATCH", `/api/v1/agents/${me.id}`, { properties: { region: "eu-1" } })).status).toBe(200);

    const created = await server.api("POST", "/api/v1/deployments", {
      targets: { tags: ["web"] },
      properties: { env: "prod" },
      steps: [
        { name: "greet", type: "plugin", plugin: "hello-tools", step: "greet", inputs: { who: "${{ deployment.properties.env }}-${{agent.properties.region}}", password: "${{ secrets.DB_PASSWORD }}" } },
        { name: "use", type: "shell", command: 'echo "got ${{ steps.greet.outputs.greeting }} on ${{ agent.name }}"; echo "shell sees ${{ secrets.DB_PASSWORD }}"; cat made-by-plugin.txt; echo "$HOME" | grep -q / && echo home-untouched' },
      ],
    });
    expect(created.status, created.text).toBe(201);
    const done = await server.waitDeployment(created.json.id);
    expect(done.status, JSON.stringify(done)).toBe("succeeded");
    const [greet, use] = done.steps;
    expect(greet).toMatchObject({ type: "plugin", plugin: { id: "hello-tools", version: "1.0.0", step: "greet" }, outputs: { greeting: "hello prod-eu-1 x2" } });

    const log = async (s: { id: string }) => (await server.api("GET", `/api/v1/deployments/${done.id}/steps/${s.id}/log`)).text;
    const greetLog = await log(greet);
    expect(greetLog).toContain("hello prod-eu-1 x2");
    expect(greetLog).toContain("password is ***");
    expect(greetLog).toContain("inputs file mode 600");
    expect(greetLog).toContain(`cwd ${join(home, "work", done.id)}`);
    const useLog = await log(use);
    expect(useLog).toContain(`got hello prod-eu-1 x2 on ${NAME}`);
    expect(useLog).toContain("shell sees ***");
    expect(useLog).toContain("made"); // the steps share the deployment's work folder
    expect(useLog).toContain("home-untouched");

    // The inputs file is gone once the step has ended; the plug-in is unpacked once.
    const stepDir = join(home, "steps", greet.id);
    expect(readdirSync(stepDir)).not.toContain("inputs.json");
    expect(readdirSync(stepDir)).not.toContain("masks");
    expect(readdirSync(join(home, "plugins", "hello-tools"))).toHaveLength(1);

    // Nowhere in clear: every API answer an admin can read …
    const answers = [
      await server.api("GET", `/api/v1/deployments/${done.id}`),
      await server.api("GET", "/api/v1/deployments"),
      await server.api("GET", "/api/v1/secrets"),
      await server.api("GET", "/api/v1/agents"),
      await server.api("GET", `/api/v1/agents/${me.id}`),
      await server.api("GET", "/api/v1/plugins/hello-tools/1.0.0"),
    ];
    for (const a of answers) expect(a.text).not.toContain(SECRET);
    expect(greetLog + useLog).not.toContain(SECRET);
    // … the server's state on disk (D1 and the Durable Objects' SQLite), the agent's home.
    expect(filesContaining(server.stateDir, SECRET)).toEqual([]);
    expect(filesContaining(home, SECRET)).toEqual([]);
    // The check itself can find things: the log text is on disk in both places.
    expect(filesContaining(home, "shell sees ***").length).toBeGreaterThan(0);
    expect(filesContaining(server.stateDir, "shell sees ***").length).toBeGreaterThan(0);
  });

  it("a worker restarted while the step ran still records its outputs masked", async () => {
    const created = await server.api("POST", "/api/v1/deployments", {
      agents: [NAME],
      steps: [{ name: "slow", type: "plugin", plugin: "hello-tools", step: "slow-echo", inputs: { password: "${{ secrets.DB_PASSWORD }}" } }],
    });
    expect(created.status, created.text).toBe(201);
    const stepId = await waitFor(async () => {
      const d = await server.api("GET", `/api/v1/deployments/${created.json.id}`);
      return d.json?.steps?.[0]?.status === "running" ? (d.json.steps[0].id as string) : null;
    }, 30_000, "slow step running");
    const workerPid = readPid(join(home, "worker.pid"));
    expect(workerPid).not.toBeNull();
    process.kill(workerPid!, "SIGKILL"); // the monitor starts a new worker, which never held the secret
    await waitFor(async () => readPid(join(home, "worker.pid")) !== workerPid && readPid(join(home, "worker.pid")), 30_000, "a new worker");
    writeFileSync(GO_FILE, "");
    const done = await server.waitDeployment(created.json.id);
    expect(done.status, JSON.stringify(done)).toBe("succeeded");
    expect(done.steps[0].outputs).toEqual({ echoed: "***" });
    const log = (await server.api("GET", `/api/v1/deployments/${done.id}/steps/${stepId}/log`)).text;
    expect(log).toContain("slow done ***");
    expect(JSON.stringify(done) + log).not.toContain(SECRET);
    expect(filesContaining(home, SECRET)).toEqual([]);
    expect(filesContaining(server.stateDir, SECRET)).toEqual([]);
  });
});
