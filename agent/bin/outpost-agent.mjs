#!/usr/bin/env node
// outpost-agent: runs from source (Node >= 22.18 strips TypeScript types).
import { runCli } from "../cli.ts";

runCli(process.argv.slice(2));
