// guard.close(): the guard stops what it started (the polling of local key files and trust bundle
// files) and keeps answering with what it holds. A closed guard and an open one follow the same
// files: once the open one has picked up a rotation, the closed one must still have the old keys.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTestCa, type TestCa } from '@callsign/testing'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { AuthError, createCallsign, type AuthRequest, type Callsign } from '../src/index.js'

const AUD = 'https://orders.example'
const WORKER = 'spiffe://example.org/ns/batch/sa/worker'

let dir: string
let ours: TestCa
let partner: TestCa
let rotatedPartner: TestCa
let first: Awaited<ReturnType<typeof generateKeyPair>>
let second: Awaited<ReturnType<typeof generateKeyPair>>
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'callsign-close-'))
  ;[ours, partner, rotatedPartner] = await Promise.all([
    createTestCa({ commonName: 'Ours' }),
    createTestCa({ commonName: 'Partner' }),
    createTestCa({ commonName: 'Partner 2' }),
  ])
  ;[first, second] = await Promise.all([generateKeyPair('ES256', { extractable: true }), generateKeyPair('ES256', { extractable: true })])
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Atomic replace, as a rotation agent does. */
async function replace(path: string, content: string): Promise<void> {
  await writeFile(`${path}.tmp`, content)
  await rename(`${path}.tmp`, path)
}

const keySet = async (key: CryptoKey, kid: string): Promise<string> => JSON.stringify({ keys: [{ ...(await exportJWK(key)), kid }] })

async function token(key: CryptoKey, kid: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ sub: WORKER, client_id: WORKER, aud: AUD, scope: 'orders:read' })
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid })
    .setIssuer(WORKER)
    .setIssuedAt(now)
    .setExpirationTime(now + 120)
    .setJti(crypto.randomUUID())
    .sign(key)
}

const request = (bearer: string): AuthRequest => ({
  method: 'GET',
  url: '/orders',
  headers: { host: 'api.example', authorization: `Bearer ${bearer}` },
  socket: {},
})

/** The caller the guard accepts the token for, or the refusal's code. */
async function outcome(guard: Callsign, bearer: string): Promise<string | undefined> {
  try {
    return (await guard.authenticate(request(bearer)))?.caller.id
  } catch (error) {
    if (error instanceof AuthError) return error.code
    throw error
  }
}

const partnerAnchors = (guard: Callsign): string[] | undefined => guard.config.mtls.trustBundles?.anchorsOf('partner.org')?.map((cert) => cert.subject)

describe('guard.close()', () => {
  it('stops following local key files and trust bundle files; keeps answering with the keys and bundles it holds; idempotent', async () => {
    const keysPath = join(dir, 'keys.json')
    const bundlePath = join(dir, 'partner.pem')
    await replace(keysPath, await keySet(first.publicKey, 'k1'))
    await replace(bundlePath, partner.certPem)
    const guardFor = (): Callsign =>
      createCallsign({
        issuers: { issuer: WORKER, audience: AUD, typ: 'jwt', jwks: { path: keysPath, pollSeconds: 0.02 } },
        mtls: { mode: 'optional', trustDomains: { 'example.org': ours.certPem, 'partner.org': { path: bundlePath, pollSeconds: 0.02 } } },
        logger: { warn() {} },
      })
    const closed = guardFor()
    const open = guardFor()
    const [old, rotated] = [await token(first.privateKey, 'k1'), await token(second.privateKey, 'k2')]
    expect(await outcome(closed, old)).toBe(WORKER)

    await closed.close()
    await closed.close()
    await replace(keysPath, await keySet(second.publicKey, 'k2'))
    await replace(bundlePath, rotatedPartner.certPem)
    await vi.waitFor(
      async () => {
        expect(await outcome(open, rotated)).toBe(WORKER)
        expect(partnerAnchors(open)).toEqual(['CN=Partner 2'])
      },
      { timeout: 5000, interval: 20 },
    )
    await open.close()

    expect(await outcome(closed, rotated)).toBe('invalid_token')
    expect(await outcome(closed, old)).toBe(WORKER)
    expect(partnerAnchors(closed)).toEqual(['CN=Partner'])
  })
})
