// An issuer behind a private CA: unreachable with the default trust store, reachable with an
// injected fetch (undici dispatcher) or with NODE_EXTRA_CA_CERTS.
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent, fetch as undiciFetch } from 'undici'
import { AuthError, createCallsign, type CallsignOptions } from '@callsign/core'
import { createTestCa, startTestIssuer, type TestCa, type TestIssuer } from '@callsign/testing'

const quiet = { warn() {} }
const request = (token: string) => ({ method: 'GET', url: '/orders', headers: { authorization: `Bearer ${token}` } })

describe('issuer behind a private CA', () => {
  let ca: TestCa
  let issuer: TestIssuer
  let dir: string
  let token: string

  beforeAll(async () => {
    ca = await createTestCa({ commonName: 'Private Issuer CA' })
    issuer = await startTestIssuer({ tls: await ca.issueServerCertificate() })
    token = await issuer.signAccessToken({ sub: 'svc', client_id: 'svc', scope: 'orders:read' }, { audience: 'orders' })
    dir = await mkdtemp(join(tmpdir(), 'callsign-ca-'))
    await writeFile(join(dir, 'ca.pem'), ca.certPem)
  })
  afterAll(async () => {
    await issuer.close()
    await rm(dir, { recursive: true, force: true })
  })

  const options = (extra: Partial<CallsignOptions> = {}): CallsignOptions => ({
    issuers: { issuer: issuer.issuer, audience: 'orders' },
    logger: quiet,
    ...extra,
  })

  it('uses https and is refused by the default trust store (503, never acceptance)', async () => {
    expect(issuer.issuer.startsWith('https://127.0.0.1:')).toBe(true)
    const guard = createCallsign(options())
    const error = await guard.authenticate(request(token)).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(AuthError)
    expect((error as AuthError).code).toBe('keys_unavailable')
    expect((error as AuthError).headers['retry-after']).toMatch(/^\d+$/)
  })

  it('is reachable through an injected fetch with an undici dispatcher trusting the private CA', async () => {
    const dispatcher = new Agent({ connect: { ca: ca.certPem } })
    const guard = createCallsign(
      options({ fetch: ((input: string, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher })) as unknown as typeof fetch }),
    )
    const auth = await guard.authenticate(request(token))
    expect(auth?.caller).toEqual({ id: 'svc', source: 'token' })
    await dispatcher.close()
  })

  it('is reachable with NODE_EXTRA_CA_CERTS and the default fetch', async () => {
    const script = `
      import { createCallsign } from '@callsign/core'
      const guard = createCallsign({ issuers: { issuer: ${JSON.stringify(issuer.issuer)}, audience: 'orders' } })
      const auth = await guard.authenticate({ method: 'GET', url: '/', headers: { authorization: 'Bearer ' + process.argv[1] } })
      console.log(auth.caller.id)`
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script, token], {
      cwd: join(import.meta.dirname, '..', 'packages', 'express'),
      env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') },
    })
    expect(stdout.trim()).toBe('svc')
  })
})
