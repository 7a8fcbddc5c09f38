// Smoke test of the benchmark harness: `node bench/run.mjs --quick --only express` must print the
// results table, and every row must have served requests. Never asserts anything about speed.
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, test } from 'vitest'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const HEADER =
  '| framework | protection | token | transport | alg | req/s | p50 ms | p99 ms | vs no auth | server CPU µs/req | capacity vs no auth | server busy | notes |'

function runBench(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'bench', 'run.mjs'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => {
      child.kill('SIGTERM')
      reject(new Error(`bench did not finish within ${timeoutMs} ms\n${stderr.slice(-2000)}`))
    }, timeoutMs)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

test('pnpm bench --quick --only express prints the table with traffic on every row', async () => {
  const { code, stdout, stderr } = await runBench(['--quick', '--only', 'express'], 270_000)
  expect(code, stderr.slice(-3000)).toBe(0)
  const lines = stdout.split('\n')
  const start = lines.indexOf(HEADER)
  expect(start, stdout).toBeGreaterThanOrEqual(0)
  // The results table ends at the first line that is not a table row (the targets table follows).
  const end = lines.findIndex((line, i) => i > start && !line.startsWith('|'))
  const rows = lines.slice(start + 2, end === -1 ? undefined : end).filter((line) => line.startsWith('| Express 5 |'))
  expect(rows.length).toBeGreaterThanOrEqual(12)
  const labels = rows.map((row) => row.split('|')[2]!.trim())
  expect(labels).toEqual(expect.arrayContaining(['no auth', 'Callsign', 'express-oauth2-jwt-bearer', 'express-jwt + jwks-rsa']))
  for (const row of rows) {
    const reqPerSecond = Number(row.split('|')[6]!.trim().replace(/,/g, ''))
    expect(reqPerSecond, row).toBeGreaterThan(0)
  }
  // Versions are part of the report.
  expect(stdout).toMatch(/\| node \| v\d+/)
}, 300_000)
