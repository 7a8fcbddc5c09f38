// The plugin closes the guard with the app: Fastify's close() stops the guard's file polling.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fastify } from 'fastify'
import { exportJWK, generateKeyPair } from 'jose'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import callsign from '../src/index.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'callsign-fastify-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('@callsign/fastify', () => {
  it('closes the guard when the app closes (app.close() -> guard.close())', async () => {
    const file = join(dir, 'keys.json')
    const { publicKey } = await generateKeyPair('ES256', { extractable: true })
    await writeFile(file, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1' }] }))
    const app = fastify()
    await app.register(callsign, {
      issuers: { issuer: 'spiffe://example.org/ns/batch/sa/worker', audience: 'orders', typ: 'jwt', jwks: { path: file, pollSeconds: 0.05 } },
      logger: { warn() {} },
    })
    await app.ready()
    const close = vi.spyOn(app.callsign, 'close')
    await app.close()
    expect(close).toHaveBeenCalledTimes(1)
    await expect(close.mock.results[0]!.value).resolves.toBeUndefined()
  })
})
