import { describe, expect, it } from "vitest";
import { parseCli, TOKEN_ENV, USAGE } from "./args.ts";
import { UsageError } from "./errors.ts";

const noEnv = {};
const reg = ["register", "--server", "https://s", "--name", "a1", "--home", "/h"];

describe("command line", () => {
  it("parses register", () => {
    expect(parseCli(["register", "--server", "https://s", "--token", "t", "--name", "a1", "--home", "/h", "--insecure", "--ca", "/ca.pem"], noEnv)).toEqual({
      command: "register", server: "https://s", token: { from: "flag", token: "t" }, name: "a1", home: "/h", insecure: true, ca: "/ca.pem", tags: [], replace: false, proxy: null,
    });
    expect(parseCli([...reg, "--token", "t", "--tags", "web, eu,,db"], noEnv)).toMatchObject({ tags: ["web", "eu", "db"] });
    expect(() => parseCli([...reg, "--token", "t", "--tags", "web,not ok"], noEnv)).toThrow(/invalid --tags/);
    expect(() => parseCli([...reg, "--token", "t", "--tags", "web,web"], noEnv)).toThrow(/must not repeat/);
    expect(parseCli([...reg, "--token", "t"], noEnv)).toMatchObject({ insecure: false, ca: null });
  });

  it("parses register --replace (a boolean flag: it takes no value)", () => {
    expect(parseCli([...reg, "--token", "t", "--replace"], noEnv)).toMatchObject({ command: "register", name: "a1", replace: true });
    expect(parseCli([...reg, "--token", "t"], noEnv)).toMatchObject({ replace: false });
    expect(() => parseCli([...reg, "--token", "t", "--replace=yes"], noEnv)).toThrow(UsageError);
    expect(() => parseCli(["run", "--home", "/h", "--replace"], noEnv)).toThrow(UsageError);
    expect(USAGE).toMatch(/register .*\[--replace\]/);
  });

  it("parses register --proxy: http:// only, kept as given, errors never repeat the credentials", () => {
    expect(parseCli([...reg, "--token", "t", "--proxy", "http://u:p@proxy.corp:3128"], noEnv)).toMatchObject({ proxy: "http://u:p@proxy.corp:3128" });
    expect(parseCli([...reg, "--token", "t", "--proxy", " proxy.corp:3128 "], noEnv)).toMatchObject({ proxy: "proxy.corp:3128" });
    expect(parseCli([...reg, "--token", "t"], { HTTPS_PROXY: "http://env:3128" })).toMatchObject({ proxy: null }); // the environment is read at run time
    const https = (() => { try { parseCli([...reg, "--token", "t", "--proxy", "https://u:s3cret@proxy.corp:443"], noEnv); } catch (e) { return e as Error; } })();
    expect(https).toBeInstanceOf(UsageError);
    expect(https!.message).toMatch(/invalid --proxy: an https:\/\/ proxy URL is not supported.*use http:\/\/host:port/);
    expect(https!.message).not.toContain("s3cret");
    for (const bad of ["socks5://p:1080", "http://p:3128/path", "http://", "http://u:s3cret@p:99999"]) {
      const e = (() => { try { parseCli([...reg, "--token", "t", "--proxy", bad], noEnv); } catch (x) { return x as Error; } })();
      expect(e, bad).toBeInstanceOf(UsageError);
      expect(e!.message).not.toContain("s3cret");
    }
    expect(USAGE).toContain("[--proxy http://[user:pass@]host:port]");
  });

  it("takes option values that start with a dash (random tokens do)", () => {
    expect(parseCli(["register", "--server", "https://s", "--token", "-Xy_z", "--name", "a1", "--home", "/h"], noEnv)).toMatchObject({ token: { token: "-Xy_z" } });
    expect(parseCli(["register", "--server=https://s", "--token=--x", "--name", "a1", "--home", "/h"], noEnv)).toMatchObject({ token: { token: "--x" }, server: "https://s" });
  });

  it("takes the registration token from exactly one of --token, --token-file and the environment; a flag wins over the environment", () => {
    expect(parseCli([...reg, "--token-file", "/run/secrets/tok"], noEnv)).toMatchObject({ token: { from: "file", path: "/run/secrets/tok" } });
    expect(parseCli(reg, { [TOKEN_ENV]: " from-env\n" })).toMatchObject({ token: { from: "env", token: "from-env" } });
    expect(parseCli([...reg, "--token", "flag"], { [TOKEN_ENV]: "env" })).toMatchObject({ token: { from: "flag", token: "flag" } });
    expect(parseCli([...reg, "--token-file", "/f"], { [TOKEN_ENV]: "env" })).toMatchObject({ token: { from: "file", path: "/f" } });
    expect(() => parseCli([...reg, "--token", "t", "--token-file", "/f"], noEnv)).toThrow(/--token or --token-file, not both/);
    expect(() => parseCli(reg, noEnv)).toThrow(new RegExp(`missing registration token: pass --token-file <file>, set ${TOKEN_ENV}`));
    expect(() => parseCli(reg, { [TOKEN_ENV]: "  " })).toThrow(/missing registration token/);
  });

  it("parses run with and without --concurrency and --retention-days", () => {
    expect(parseCli(["run", "--home", "/h"], noEnv)).toEqual({ command: "run", home: "/h", concurrency: null, retentionDays: null });
    expect(parseCli(["run", "--home", "/h", "--concurrency", "8"], noEnv)).toMatchObject({ concurrency: 8 });
    expect(parseCli(["run", "--home", "/h", "--retention-days", "14"], noEnv)).toMatchObject({ retentionDays: 14 });
    expect(parseCli(["run", "--home", "/h", "--retention-days", "0.0001"], noEnv)).toMatchObject({ retentionDays: 0.0001 });
  });

  it("rejects bad input with a UsageError", () => {
    const bad = [[], ["frobnicate"], ["run"], ["run", "--home", "/h", "--concurrency", "0"], ["run", "--home", "/h", "--concurrency", "x"],
      ["run", "--home", "/h", "--bogus"], ["register", "--server", "https://s", "--token", "t", "--home", "/h"], ["run", "--home", "/h", "extra"],
      ["run", "--home", "/h", "--retention-days", "0"], ["run", "--home", "/h", "--retention-days", "-1"], ["run", "--home", "/h", "--retention-days", "x"],
      ["run", "--home", "/h", "--retention-days", "Infinity"], ["run", "--home", "/h", "--retention-days", ""], [...reg, "--token", ""]];
    for (const argv of bad) expect(() => parseCli(argv, noEnv), argv.join(" ")).toThrow(UsageError);
  });
});
