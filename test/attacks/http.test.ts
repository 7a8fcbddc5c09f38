/**
 * Attacks at the HTTP level, one test per attack, against every adapter over real HTTPS: ambiguous
 * credentials (several Authorization or DPoP headers, a token in the query string), scheme and
 * separator tricks, empty and oversized values. Each asserts the exact status and challenge AND
 * that no issuer was contacted. Never a 5xx (Node's own 431 for oversized headers is fine).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDpopKey, createDpopProof, type DpopKey, type TestIssuer } from '@callsign/testing'
import { adapters, type RunningApp } from '../support/adapters.js'
import { statusRecorder, type StatusRecorder } from '../support/attacks.js'
import type { CallOptions, CallResult } from '../support/client.js'
import { htuFor } from '../support/dpop.js'
import { expectAccepted, expectRefusal, type RefusalExpectation } from '../support/expectations.js'
import { createFixture, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'

let fx: Fixture
let A: TestIssuer
let key: DpopKey
beforeAll(async () => {
  ;[fx, key] = await Promise.all([createFixture(), createDpopKey('ES256')])
  A = await fx.startIssuer({ discovery: 'none' })
})
afterAll(() => fx?.close())

const SVC = { sub: 'svc-a', client_id: 'svc-a', scope: 'orders:read' }
const INVALID_REQUEST: RefusalExpectation = { status: 400, code: 'invalid_request' }

describe.each(adapters)('$name: HTTP-level attacks', (adapter) => {
  let rec: StatusRecorder
  let app: RunningApp
  let token: string

  beforeAll(async () => {
    rec = statusRecorder(fx.call)
    app = await fx.start(adapter, { issuers: issuerOption(A, { explicitJwks: true }), logger: quiet, jwks: { cooldownSeconds: 600 } })
    await app.guard.ready()
    token = await sign(A, SVC)
  })

  async function attack(request: CallOptions, expected: RefusalExpectation, detail?: string | RegExp): Promise<CallResult> {
    const fetches = A.requestCount()
    const res = await rec.call(app, request)
    expectRefusal(res, expected)
    if (detail !== undefined) expect(res.body.detail, res.text.slice(0, 200)).toMatch(detail)
    expect(A.requestCount(), 'issuer requests').toBe(fetches)
    return res
  }
  const served = async (request: CallOptions): Promise<void> => {
    expectAccepted(await rec.call(app, request), { caller: { id: 'svc-a', source: 'token' }, scopes: ['orders:read'] })
  }

  it('several Authorization headers: 400, whatever they hold (same token twice, Bearer + DPoP, Bearer + Basic, one empty)', async () => {
    const variants = [
      [`Bearer ${token}`, `Bearer ${token}`],
      [`Bearer ${token}`, `DPoP ${token}`],
      [`Basic YTpi`, `Bearer ${token}`],
      [`Bearer ${token}`, ''],
    ]
    for (const authorization of variants) await attack({ authorization }, INVALID_REQUEST, 'more than one Authorization header')
  })

  it('several DPoP headers: 401 invalid_dpop_proof in the DPoP challenge', async () => {
    const bound = await sign(A, SVC, { dpopJkt: key.jkt })
    const proof = await createDpopProof(key, { method: 'GET', url: htuFor(app), accessToken: bound })
    await attack(
      { authorization: `DPoP ${bound}`, headers: { dpop: [proof, proof] } },
      { status: 401, code: 'invalid_dpop_proof', errorScheme: 'DPoP' },
      'more than one DPoP header',
    )
    await attack(
      { authorization: `DPoP ${bound}`, headers: { dpop: [proof, ''] } },
      { status: 401, code: 'invalid_dpop_proof', errorScheme: 'DPoP' },
      'more than one DPoP header',
    )
  })

  it('a token in the query string (access_token, percent-encoded names), with or without a header: 400', async () => {
    const names = ['access_token', 'access%5Ftoken', 'access%5ftoken', '%61ccess_token', '%61%63%63%65%73%73%5F%74%6F%6B%65%6E']
    for (const [i, name] of names.entries()) {
      for (const path of [`/whoami?${name}=${token}`, `/whoami?a=1&${name}=x`, `/whoami?${name}`]) {
        // Alternately alone and next to a valid Authorization header.
        await attack({ path, ...(i % 2 === 0 ? {} : { token }) }, INVALID_REQUEST, 'access tokens are not accepted in the query string')
      }
    }
    // On a route without requireAuth too, and with a fragment-looking suffix.
    await attack({ path: `/public?access_token=${token}` }, INVALID_REQUEST, 'access tokens are not accepted in the query string')
    // Other names are not credentials: the header decides.
    await served({ path: '/whoami?token=x&ACCESS_TOKEN=y&access-token=z', token })
  })

  it('mixed-case schemes and separators: bEaReR and several spaces accepted; tab, comma, quotes refused; no separator is another scheme', async () => {
    for (const authorization of [`bEaReR ${token}`, `BEARER ${token}`, `Bearer  ${token}`, `Bearer    ${token}`, `  Bearer ${token}  `])
      await served({ authorization })
    for (const authorization of [`Bearer\t${token}`, `Bearer \t${token}`, `Bearer,${token}`, `Bearer ${token}, Bearer ${token}`, `Bearer "${token}"`]) {
      await attack({ authorization }, INVALID_REQUEST, /malformed Authorization header|malformed Bearer token/)
    }
    // No separator at all: one unknown scheme token ("Bearer<jwt>"), not a Bearer credential.
    for (const authorization of [`Basic ${Buffer.from('a:b').toString('base64')}`, `Token ${token}`, `Bearer${token}`, `Bearer-${token.slice(0, 10)}`]) {
      await attack({ authorization }, { status: 401, code: 'credentials_missing' })
    }
  })

  it('empty credentials: empty header, scheme only, scheme and spaces', async () => {
    await attack({ authorization: '' }, INVALID_REQUEST, 'empty Authorization header')
    await attack({ authorization: '   ' }, INVALID_REQUEST, 'empty Authorization header')
    for (const authorization of ['Bearer', 'Bearer ', 'bearer    ']) await attack({ authorization }, INVALID_REQUEST, 'Bearer token missing')
    await attack({ authorization: 'DPoP' }, { ...INVALID_REQUEST, errorScheme: 'DPoP' }, 'DPoP token missing')
  })

  it("very long headers: a 12 KiB+ token is 400; past Node's 16 KiB header limit it is Node's 431; never a 5xx", async () => {
    await attack({ authorization: `Bearer ${'a'.repeat(12 * 1024 + 1)}` }, INVALID_REQUEST, 'Bearer token too large')
    for (const headers of [
      { authorization: `Bearer ${'a'.repeat(20_000)}` },
      { 'x-padding': 'p'.repeat(20_000), authorization: `Bearer ${token}` },
      { dpop: 'd'.repeat(20_000), authorization: `Bearer ${token}` },
    ]) {
      const fetches = A.requestCount()
      const res = await rec.call(app, { headers })
      expect([400, 431], res.text.slice(0, 200)).toContain(res.status)
      expect(A.requestCount()).toBe(fetches)
    }
    // A 9 KiB proof next to a DPoP token is refused by Callsign itself.
    const bound = await sign(A, SVC, { dpopJkt: key.jkt })
    await attack(
      { authorization: `DPoP ${bound}`, headers: { dpop: 'e'.repeat(9 * 1024) } },
      { status: 401, code: 'invalid_dpop_proof', errorScheme: 'DPoP' },
      'malformed DPoP proof',
    )
  })

  it('non-ASCII (latin-1) bytes in the Authorization header: 400', async () => {
    for (const authorization of [`Bearer ${token}\u00e9`, `B\u00e9arer ${token}`, `Bearer \u00ff${token}`]) {
      await attack({ authorization }, INVALID_REQUEST, /malformed Authorization header|malformed Bearer token/)
    }
  })

  it('never a 5xx in this family', () => {
    expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
  })
})
