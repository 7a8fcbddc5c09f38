// `pnpm pack:all`: a tarball of every public package in dist-tarballs/, installable with plain
// npm before the packages are on the registry, and the `npm i` line for each adapter. pnpm pack
// rewrites `workspace:*` to the exact version, which npm can satisfy only when core's tarball is
// in the same `npm i` as the adapter's; the printed lines always include it.
// Run after a build (the root script runs scripts/setup.mjs first).
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, rmSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Where `pnpm pack:all` writes the tarballs (git-ignored). */
export const TARBALL_DIR = join(root, 'dist-tarballs')

/** What each install line adds besides tarballs: the framework, at its peer range's major. */
const INSTALLS = [
  { label: 'Express 5', packages: ['@callsign/core', '@callsign/express'], extra: ['express@5'] },
  { label: 'Fastify 5', packages: ['@callsign/core', '@callsign/fastify'], extra: ['fastify@5'] },
  { label: 'Koa 3', packages: ['@callsign/core', '@callsign/koa'], extra: ['koa@3'] },
  { label: 'plain node:http', packages: ['@callsign/core', '@callsign/node'], extra: [] },
  {
    label: 'Redis replay store, beside one adapter above (or node-redis: `redis` instead of `ioredis`)',
    packages: ['@callsign/core', '@callsign/redis'],
    extra: ['ioredis'],
  },
  { label: 'calling side (@callsign/client)', packages: ['@callsign/core', '@callsign/client'], extra: [] },
  { label: 'test kit (dev dependency)', packages: ['@callsign/testing'], extra: [], dev: true },
]

/** pnpm as `[command, leading args]`: the pnpm running this script if any, else pnpm 10 through npx (as scripts/setup.mjs). */
export function pnpmCommand() {
  const own = process.env.npm_execpath
  return own && /pnpm/.test(own) ? [process.execPath, [own]] : ['npx', ['-y', 'pnpm@10']]
}

function pnpm(args, options) {
  const [command, leading] = pnpmCommand()
  return execFileSync(command, [...leading, ...args], { encoding: 'utf8', ...options })
}

const shellQuote = (word) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`)

/**
 * Packs every package that is not private into `out` (old tarballs there are removed first).
 * Returns `{ tarballs, installs }`: the tarball path per package name, and per install line its
 * `label` and `args` for `npm` (`['i', ...tarballs, ...framework]`), the same words that are printed.
 */
export function packAll(destination = TARBALL_DIR) {
  const out = resolve(destination)
  mkdirSync(out, { recursive: true })
  for (const file of readdirSync(out)) if (file.endsWith('.tgz')) rmSync(join(out, file))
  // One recursive pack (private packages are skipped) instead of one pnpm process per package.
  const packed = JSON.parse(pnpm(['-r', '--filter', './packages/*', 'pack', '--json', '--pack-destination', out], { cwd: root }))
  const tarballs = new Map(
    [packed]
      .flat()
      .map(({ name, filename }) => [name, filename])
      .sort(([a], [b]) => a.localeCompare(b)),
  )
  const tarball = (name) => {
    if (!tarballs.has(name)) throw new Error(`pack:all: no tarball for ${name} (is it private?)`)
    return tarballs.get(name)
  }
  const installs = INSTALLS.map(({ label, packages, extra, dev }) => ({
    label,
    args: ['i', ...(dev ? ['-D'] : []), ...packages.map(tarball), ...extra],
  }))
  return { tarballs, installs }
}

/** The line a user pastes: `npm i /abs/callsign-core-0.1.0.tgz /abs/callsign-express-0.1.0.tgz express@5`. */
export const installLine = ({ args }) => ['npm', ...args].map(shellQuote).join(' ')

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { tarballs, installs } = packAll()
  console.log(`${tarballs.size} tarballs in ${TARBALL_DIR}:`)
  for (const file of tarballs.values()) console.log(`  ${file.slice(TARBALL_DIR.length + 1)}`)
  console.log('\nIn your project (ESM, Node >= 20), run the line for your framework; core must be in the same npm i:')
  for (const install of installs) console.log(`\n# ${install.label}\n${installLine(install)}`)
}
