#!/usr/bin/env node
/**
 * `callsign explain`: why would this call be allowed or refused?
 *
 *   callsign explain --options guard.json --token <jwt|@file|-> [--dpop <proof|@file>] [--cert client.pem]
 *                    [--ca bundle.pem] [--method GET] [--url https://orders.example/orders] [--rule '{"scopes":["orders:read"]}'] [--json]
 *
 * Exit code 0 allowed, 1 refused, 2 bad input. Never prints the token's signature or the proof.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { explain, stepStatus, type ExplainInput, type Explanation } from './explain.js'

const USAGE = `usage: callsign explain --options <file.json|file.mjs> --token <jwt|@file|-> [--dpop <proof|@file>]
                        [--cert <client.pem>] [--ca <bundle.pem>] [--method GET] [--url <https://...>]
                        [--rule <json>] [--json]
exit code: 0 allowed, 1 refused, 2 bad input`

function value(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined
  if (raw === '-') return readFileSync(0, 'utf8').trim()
  if (raw.startsWith('@')) return readFileSync(raw.slice(1), 'utf8').trim()
  return raw.trim()
}

async function loadOptions(file: string): Promise<ExplainInput['options']> {
  const path = resolve(file)
  if (/\.(m?js|cjs)$/.test(path)) {
    const module = (await import(pathToFileURL(path).href)) as { default?: unknown; options?: unknown }
    return (module.default ?? module.options) as ExplainInput['options']
  }
  return JSON.parse(readFileSync(path, 'utf8')) as ExplainInput['options']
}

const ARGUMENTS = {
  options: { type: 'string' },
  token: { type: 'string' },
  dpop: { type: 'string' },
  cert: { type: 'string' },
  ca: { type: 'string' },
  method: { type: 'string' },
  url: { type: 'string' },
  rule: { type: 'string' },
  json: { type: 'boolean' },
} as const

const parseArguments = (args: string[]) => parseArgs({ args, options: ARGUMENTS, strict: true }).values
type Arguments = ReturnType<typeof parseArguments>

/** What to explain, read from the arguments (files and stdin included). Throws on a missing or unreadable input. */
async function readInput(values: Arguments): Promise<ExplainInput> {
  if (!values.options) throw new Error('--options is required')
  const input: ExplainInput = { options: await loadOptions(values.options) }
  const token = value(values.token)
  if (token) input.token = token
  const proof = value(values.dpop)
  if (proof) input.dpopProof = proof
  if (values.cert) input.certificatePem = readFileSync(values.cert, 'utf8')
  if (values.ca) input.caPem = readFileSync(values.ca, 'utf8')
  if (values.method) input.method = values.method
  if (values.url) input.url = values.url
  if (values.rule) input.rule = JSON.parse(values.rule)
  return input
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command !== 'explain') {
    console.error(USAGE)
    return 2
  }
  let values: Arguments
  try {
    values = parseArguments(rest)
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`)
    return 2
  }
  let input: ExplainInput
  try {
    input = await readInput(values)
  } catch (error) {
    console.error(`callsign explain: ${(error as Error).message}\n${USAGE}`)
    return 2
  }
  let result
  try {
    result = await explain(input)
  } catch (error) {
    // Bad options (TypeError naming the option), unreadable certificate, ...
    console.error(`callsign explain: ${(error as Error).message}`)
    return 2
  }
  console.log(values.json ? toJson(result) : toText(result))
  return result.allowed ? 0 : 1
}

/** `--json`: the explanation with each step's status ('pass' | 'fail' | 'not-checked') and compared values. */
function toJson(result: Explanation): string {
  const { auth, steps, ...printable } = result
  const withStatus = steps.map((s) => ({ check: s.check, status: stepStatus(s), ok: s.ok, detail: s.detail, ...(s.compared ? { compared: s.compared } : {}) }))
  const identity = { caller: auth?.caller, user: auth?.user, scopes: auth?.scopes, actors: auth?.actors, binding: auth?.binding }
  return JSON.stringify({ ...printable, steps: withStatus, ...identity }, null, 2)
}

/** One line per step (PASS, FAIL, or "not checked"), the compared values under the failed one, then the decision. */
function toText(result: Explanation): string {
  const width = Math.max(...result.steps.map((s) => s.check.length))
  const lines = result.steps.flatMap((s) => {
    const status = stepStatus(s)
    const label = status === 'pass' ? 'PASS' : status === 'fail' ? 'FAIL' : '    '
    const line = `${label}  ${s.check.padEnd(width)}  ${status === 'not-checked' ? `not checked: ${s.detail}` : s.detail}`
    const compared = (s.compared ?? []).map(
      (c) => `${' '.repeat(width + 6)}  ${c.field}: presented ${JSON.stringify(c.presented)}, expected ${JSON.stringify(c.expected)}`,
    )
    return [line, ...compared]
  })
  lines.push(result.allowed ? '\nALLOWED' : `\nREFUSED ${result.status} ${result.code}: ${result.reason}`)
  return lines.join('\n')
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    console.error(`callsign explain: ${(error as Error).message}`)
    process.exitCode = 2
  },
)
