import { describe, expect, it } from "vitest";
import { PassThrough } from "node:stream";
import { pipeWithoutNoise } from "./quiet-output.ts";

async function filter(text: string) {
  const from = new PassThrough();
  const to = new PassThrough();
  let out = "";
  to.on("data", (d) => (out += d));
  pipeWithoutNoise(from, to);
  from.end(text);
  await new Promise((r) => setTimeout(r, 20));
  return out;
}

describe("pipeWithoutNoise", () => {
  it("drops the offline Request.cf warning with its stack and the cron hint, keeps the rest", async () => {
    const out = await filter(
      [
        "[wrangler:warn] Unable to fetch the `Request.cf` object! Falling back to a default placeholder...",
        "Error: getaddrinfo ENOTFOUND workers.cloudflare.com",
        "    at GetAddrInfoReqWrap.onlookupall [as oncomplete] (node:dns:122:26)",
        "real line 1",
        "▲ [WARNING] Scheduled Workers are not automatically triggered during local development.",
        "",
        "  To manually trigger a scheduled event, run:",
        '    curl "http://127.0.0.1:1/cdn-cgi/local/scheduled"',
        "",
        "real line 2",
        "Error: something that matters",
      ].join("\n") + "\n",
    );
    expect(out).toBe("real line 1\nreal line 2\nError: something that matters\n");
  });
});
