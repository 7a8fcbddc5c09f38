// The one rule set for reloaded files (server TLS material, the introspection client certificate,
// local key files, trust bundles): content compared by hash, a change applied once two reads in a
// row agree (or at the first read, for a check right before use), a refused content reported once
// and the previous one kept. Driven read by read through check(): no timing involved.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { readFilesSync, textOf, WatchedFiles, type ConfirmRule, type FileSnapshot } from '../src/internal/watched-file.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'callsign-watched-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Atomic replace, as a rotation agent does. */
async function write(name: string, content: string): Promise<void> {
  await writeFile(join(dir, `.${name}.tmp`), content)
  await rename(join(dir, `.${name}.tmp`), join(dir, name))
}

/** Two files whose texts must start alike (a certificate and its key); "bad" content is refused. */
async function watched(confirm?: ConfirmRule) {
  await write('a', 'v1')
  await write('b', 'v1')
  const paths = [join(dir, 'a'), join(dir, 'b')]
  const applied: Array<{ texts: string[]; changed: string[] }> = []
  const refused: string[] = []
  const unchanged = vi.fn()
  const files = new WatchedFiles({
    paths,
    initial: readFilesSync(paths),
    apply: (snapshot: FileSnapshot, changed) => {
      const texts = paths.map((path) => textOf(snapshot, path))
      if (texts.some((text) => text.startsWith('bad')) || texts[0] !== texts[1]) throw new Error(`refused ${texts.join('/')}`)
      applied.push({ texts, changed })
    },
    onRefused: (error) => refused.push((error as Error).message),
    onUnchanged: unchanged,
    ...(confirm ? { confirm } : {}),
  })
  return { files, paths, applied, refused, unchanged }
}

describe('WatchedFiles', () => {
  it('applies a change once two reads in a row agree; a half-done rotation is neither applied nor reported', async () => {
    const { files, paths, applied, refused, unchanged } = await watched()
    await files.check()
    expect([files.state, unchanged.mock.calls.length]).toEqual(['applied', 1])

    await write('a', 'v2') // b not yet rotated
    await files.check()
    expect(files.state).toBe('seen-once')
    await write('b', 'v2') // now both: still a change since the last read
    await files.check()
    expect([files.state, applied, refused]).toEqual(['seen-once', [], []])
    await files.check()
    expect(files.state).toBe('applied')
    expect(applied).toEqual([{ texts: ['v2', 'v2'], changed: paths }])
    await files.check()
    expect(applied).toHaveLength(1)
  })

  it('refuses new content once, keeps the previous one, reports each distinct bad content once', async () => {
    const { files, paths, applied, refused } = await watched()
    await write('a', 'bad 1')
    for (let i = 0; i < 4; i++) await files.check()
    expect([files.state, refused]).toEqual(['refused', ['refused bad 1/v1']])
    await write('a', 'bad 2')
    for (let i = 0; i < 3; i++) await files.check()
    expect(refused).toEqual(['refused bad 1/v1', 'refused bad 2/v1'])
    await write('a', 'v1') // back to the content in use: nothing to do
    await files.check()
    expect([files.state, applied]).toEqual(['applied', []])
    await write('a', 'v3')
    await write('b', 'v3')
    await files.check()
    await files.check()
    expect(applied).toEqual([{ texts: ['v3', 'v3'], changed: paths }])
  })

  it('treats an unreadable file as content of its own: refused with its error code, once', async () => {
    const { files, refused } = await watched()
    await rm(join(dir, 'b'))
    for (let i = 0; i < 3; i++) await files.check()
    expect(refused).toEqual([expect.stringMatching(/^ENOENT/)])
  })

  it("'first-read': a change is applied by the first read that finds it (a check right before use)", async () => {
    const { files, paths, applied, refused } = await watched('first-read')
    await write('a', 'v2')
    await files.check()
    expect(refused).toEqual(['refused v2/v1'])
    await files.check()
    expect(refused).toHaveLength(1)
    await write('b', 'v2')
    await files.check()
    expect(applied).toEqual([{ texts: ['v2', 'v2'], changed: paths }])
  })

  it('reload(): applies at once, true when the content in use is current, and reports a refusal every time', async () => {
    const { files, paths, applied, refused } = await watched()
    expect(await files.reload()).toBe(true)
    await write('a', 'bad')
    expect(await files.reload()).toBe(false)
    expect(await files.reload()).toBe(false)
    expect(refused).toHaveLength(2)
    // A check after a refused reload does not report the same content again.
    await files.check()
    await files.check()
    expect(refused).toHaveLength(2)
    await write('a', 'v2')
    await write('b', 'v2')
    expect(await files.reload()).toBe(true)
    expect(applied).toEqual([{ texts: ['v2', 'v2'], changed: paths }])
  })

  it('close(): a read in flight and later checks are not acted on; polling stops and does not restart', async () => {
    const { files, applied } = await watched('first-read')
    await write('a', 'v2')
    await write('b', 'v2')
    const inFlight = files.check()
    files.close()
    await inFlight
    await files.check()
    files.start(10)
    files.close()
    expect(applied).toEqual([])
    // An explicit reload still works (server TLS keeps reload() after close()).
    expect(await files.reload()).toBe(true)
    expect(applied).toHaveLength(1)
  })

  it('start(): polls until stop(), with a timer that does not keep the process alive', async () => {
    const { files, applied } = await watched()
    const timers = (): number => process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length
    const before = timers()
    files.start(10)
    files.start(10) // idempotent
    expect(timers()).toBe(before)
    await write('a', 'v2')
    await write('b', 'v2')
    await vi.waitFor(() => expect(applied).toHaveLength(1), { timeout: 5000, interval: 10 })
    files.stop()
  })
})
