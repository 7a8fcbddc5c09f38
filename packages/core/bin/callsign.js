#!/usr/bin/env node
// The `callsign` bin (src/cli.ts). A committed file rather than dist/cli.js itself: in a fresh
// clone pnpm links bins before the first build, and it never links a bin whose file is missing.
import { existsSync } from 'node:fs'

const cli = new URL('../dist/cli.js', import.meta.url)
if (existsSync(cli)) {
  await import(cli.href)
} else {
  console.error('callsign: @callsign/core is not built yet; run `pnpm build` in the Callsign repository')
  process.exitCode = 2
}
