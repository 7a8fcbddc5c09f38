// Makes `pnpm test` and `pnpm demo` work on a fresh clone: installs dependencies from the
// lockfile when needed, then builds the packages (tests and the demo use the built output,
// exactly what users get).
import { spawnSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const run = (command, args) => {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' })
  if (result.status !== 0) process.exit(result.status ?? 1)
}
const pnpm = process.env.npm_execpath
const marker = join(root, 'node_modules', '.modules.yaml')
const stale = !existsSync(marker) || statSync(join(root, 'pnpm-lock.yaml')).mtimeMs > statSync(marker).mtimeMs
if (stale) {
  if (pnpm && /pnpm/.test(pnpm)) run(process.execPath, [pnpm, 'install', '--frozen-lockfile'])
  else run('npx', ['-y', 'pnpm@10', 'install', '--frozen-lockfile'])
}
run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', 'tsconfig.build.json'])

// The real-Redis tests need `redis-server`. Install it when we can (root with apt-get, as on CI
// and fresh Debian machines); otherwise those suites say they are skipped.
const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
if (process.argv.includes('--with-redis') && !has('redis-server') && process.getuid?.() === 0 && has('apt-get')) {
  console.log('setup: installing redis-server for the @callsign/redis tests (apt-get)')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const quiet = { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], env }
  if (spawnSync('apt-get', ['install', '-y', '-q', 'redis-server'], quiet).status !== 0) {
    spawnSync('apt-get', ['update', '-q'], quiet)
    spawnSync('apt-get', ['install', '-y', '-q', 'redis-server'], quiet)
  }
}
