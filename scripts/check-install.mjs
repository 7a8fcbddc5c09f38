// `pnpm check:install` (CI runs it after check:packages): what a new user does from a clone.
//  1. `pnpm exec callsign` in the workspace runs the project's CLI (the bin is linked by install).
//  2. `pnpm pack:all` builds dist-tarballs/ (scripts/pack-all.mjs).
//  3. An EMPTY npm project outside the workspace (`npm init -y`, "type": "module") runs the printed
//     `npm i` lines word for word: Express first, then the test kit, then the other adapters.
//  4. scripts/install-smoke.mjs, copied into that project, serves a protected route over mTLS
//     through each adapter and makes one accepted (200) and one refused (401) call; with Express
//     it also runs `npx --no callsign explain`.
// Needs the npm registry for the frameworks (express, fastify, koa) and core's dependencies.
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, realpathSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { installLine, packAll, pnpmCommand } from './pack-all.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const started = process.hrtime.bigint()
const seconds = () => `${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(1)} s`

// npm runs as in the user's own shell, not inside pnpm's (or npx's: npm_config_yes) script context.
const SCRIPT_CONTEXT = /^(npm_(package|lifecycle)_|npm_(command|execpath|node_execpath)$|npm_config_(user_agent|local_prefix|yes)$|pnpm_)/i
const userEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !SCRIPT_CONTEXT.test(key)))

class StepFailed extends Error {}

function step(title, run) {
  console.log(`\ncheck:install: ${title}`)
  try {
    return run()
  } catch (error) {
    throw error instanceof StepFailed ? error : new StepFailed(`${title}: ${error.message}`)
  }
}

function workspaceBin() {
  const [command, leading] = pnpmCommand()
  const result = spawnSync(command, [...leading, 'exec', 'callsign', '--help'], { cwd: root, encoding: 'utf8' })
  // The CLI answers an unknown command with its usage and exit code 2 ("bad input").
  if (result.status !== 2 || !result.stderr.includes('usage: callsign explain')) {
    const output = `${result.stderr}${result.stdout}`.trim()
    throw new StepFailed(`pnpm exec callsign --help: expected the usage of callsign explain (is the bin linked?), got exit ${result.status}:\n${output}`)
  }
  console.log(`  ok    ${result.stderr.split('\n')[0]}`)
}

function npm(project, args) {
  console.log(`  $ ${installLine({ args })}`)
  execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd: project, env: userEnv, stdio: 'inherit' })
}

function smoke(project, args) {
  // The timeout only turns a hang into a failure; the smoke test takes a few seconds.
  const result = spawnSync(process.execPath, ['install-smoke.mjs', ...args], { cwd: project, env: userEnv, stdio: 'inherit', timeout: 120_000 })
  if (result.status !== 0) throw new StepFailed(`install-smoke.mjs ${args.join(' ')} exited ${result.status ?? result.signal}`)
}

let project
try {
  step('the callsign bin in the workspace', workspaceBin)
  const { tarballs, installs } = step('pack:all', () => packAll())
  console.log(`  ok    ${tarballs.size} tarballs in ${relative(root, dirname([...tarballs.values()][0]))}/`)
  const line = (label) => installs.find((install) => install.label.startsWith(label))

  project = realpathSync(mkdtempSync(join(tmpdir(), 'callsign-install-')))
  if (!relative(root, project).startsWith('..')) throw new StepFailed(`the empty project ${project} is inside the workspace; set TMPDIR elsewhere`)
  step(`an empty project in ${project}`, () => {
    execFileSync('npm', ['init', '-y'], { cwd: project, env: userEnv, stdio: 'ignore' })
    execFileSync('npm', ['pkg', 'set', 'type=module'], { cwd: project, env: userEnv })
    copyFileSync(join(root, 'scripts', 'install-smoke.mjs'), join(project, 'install-smoke.mjs'))
  })
  step('Express and the test kit from their tarballs, with plain npm', () => {
    npm(project, line('Express').args)
    npm(project, line('test kit').args)
  })
  step('an Express service over mTLS: one accepted call, one refused; the callsign bin', () => smoke(project, ['express', '--explain']))
  step('Fastify, Koa and node:http beside it', () => {
    for (const label of ['Fastify', 'Koa', 'plain node:http']) npm(project, line(label).args)
  })
  step('all four adapters in that project', () => smoke(project, ['express', 'fastify', 'koa', 'node']))
  step('the calling side beside them: @callsign/client calls the Express service', () => {
    npm(project, line('calling side').args)
    smoke(project, ['express', '--client'])
  })
  rmSync(project, { recursive: true, force: true })
  console.log(
    `\ncheck:install: OK: 4 adapters and the client installed with npm from dist-tarballs/ into an empty project; each accepted (200) and refused (401) over mTLS; the client's call accepted; the callsign bin runs (${seconds()})`,
  )
} catch (error) {
  const kept = project ? ` (the project is kept in ${project})` : ''
  console.error(`\ncheck:install: FAILED: ${error instanceof StepFailed ? error.message : error.stack}${kept} (${seconds()})`)
  process.exitCode = 1
}
