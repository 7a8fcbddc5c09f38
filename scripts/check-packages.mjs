// Packs every publishable package as a user would receive it and checks that each `exports`
// target (types first, then code) is inside the tarball and that no `workspace:` range leaks.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
const out = mkdtempSync(join(tmpdir(), 'callsign-pack-'))
const pnpm = process.env.npm_execpath
let failures = 0
try {
  for (const name of readdirSync(join(root, 'packages'))) {
    const dir = join(root, 'packages', name)
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
    if (manifest.private) continue
    const args = ['pack', '--pack-destination', out]
    const stdout = pnpm
      ? execFileSync(process.execPath, [pnpm, ...args], { cwd: dir, encoding: 'utf8' })
      : execFileSync('npx', ['-y', 'pnpm@10', ...args], { cwd: dir, encoding: 'utf8' })
    const tarball = stdout.trim().split('\n').pop()
    const files = new Set(
      execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
        .split('\n')
        .map((f) => f.replace(/^package\//, '')),
    )
    const packed = JSON.parse(execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' }))
    const problems = []
    for (const [entry, target] of Object.entries(packed.exports ?? {})) {
      if (typeof target === 'string') {
        if (!files.has(target.replace(/^\.\//, ''))) problems.push(`${entry} -> ${target} missing`)
        continue
      }
      const conditions = Object.keys(target)
      if (conditions[0] !== 'types') problems.push(`${entry}: "types" must be the first condition`)
      for (const file of Object.values(target)) if (!files.has(String(file).replace(/^\.\//, ''))) problems.push(`${entry} -> ${file} missing`)
    }
    const bins = typeof packed.bin === 'string' ? { [packed.name]: packed.bin } : (packed.bin ?? {})
    for (const [bin, target] of Object.entries(bins)) if (!files.has(target.replace(/^\.\//, ''))) problems.push(`bin ${bin} -> ${target} missing`)
    const deps = { ...packed.dependencies, ...packed.peerDependencies }
    for (const [dep, range] of Object.entries(deps)) if (String(range).startsWith('workspace:')) problems.push(`${dep}: ${range} leaked`)
    if (problems.length) {
      failures++
      console.error(`✗ ${manifest.name}\n  ${problems.join('\n  ')}`)
    } else {
      console.log(`✓ ${manifest.name}: ${files.size - 1} files, exports resolve`)
    }
  }
} finally {
  rmSync(out, { recursive: true, force: true })
}
process.exit(failures ? 1 : 0)
