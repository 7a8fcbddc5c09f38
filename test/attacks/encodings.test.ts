/**
 * One value, one spelling: the same bytes written a second way in base64url (the unused low bits
 * of a segment's last character set, which a decoder ignores) must not make a second acceptable
 * token or proof. Against every adapter over real HTTPS: every segment of an access token and of
 * a DPoP proof. Each spelling is refused (never a 5xx) without contacting the issuer or the
 * replay store, and the canonical spelling of the same token or proof is accepted.
 * (Signed introspection answers: test/conformance/introspection.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDpopKey, createDpopProof, type DpopKey, type TestIssuer } from '@callsign/testing'
import { adapters, type RunningApp } from '../support/adapters.js'
import { respell, spelledToken, statusRecorder, type StatusRecorder } from '../support/attacks.js'
import { countingReplayStore, dpopRequest, htuFor, type CountingReplayStore } from '../support/dpop.js'
import { expectAccepted, expectRefusal } from '../support/expectations.js'
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

describe.each(adapters)('$name: one spelling per token and proof', (adapter) => {
  let rec: StatusRecorder
  let app: RunningApp
  let store: CountingReplayStore
  beforeAll(async () => {
    rec = statusRecorder(fx.call)
    store = countingReplayStore()
    app = await fx.start(adapter, { issuers: issuerOption(A, { explicitJwks: true }), logger: quiet, dpop: { replayStore: store } })
    await app.guard.ready()
  })

  it.each([0, 1, 2])('access token: segment %i spelled a second way is refused (401 malformed token), the canonical one accepted', async (index) => {
    const token = await spelledToken((claims, header) => sign(A, { ...SVC, ...claims }, { header }))
    const requests = A.requestCount()
    const res = await rec.call(app, { token: respell(token, index) })
    expectRefusal(res, { status: 401, code: 'invalid_token' })
    expect(res.body.detail).toBe('malformed token')
    expect(A.requestCount() - requests).toBe(0)
    expectAccepted(await rec.call(app, { token }), { caller: { id: 'svc-a', source: 'token' }, scopes: ['orders:read'] })
  })

  it.each([0, 1, 2])(
    'DPoP proof: segment %i spelled a second way is refused (401 invalid_dpop_proof) before the replay store, the canonical one accepted',
    async (index) => {
      const token = await sign(A, SVC, { dpopJkt: key.jkt })
      // Pad the proof's header and claims until every segment has unused bits to set.
      let proof: string | undefined
      for (let h = 0; h < 4 && !proof; h++) {
        for (let p = 0; p < 4 && !proof; p++) {
          const candidate = await createDpopProof(key, {
            method: 'GET',
            url: htuFor(app),
            accessToken: token,
            extraHeader: { pad: 'y'.repeat(h) },
            extraClaims: { pad: 'x'.repeat(p) },
          })
          if (candidate.split('.').every((segment) => segment.length % 4 !== 0)) proof = candidate
        }
      }
      const marked = store.calls
      const res = await rec.call(app, await dpopRequest(app, key, token, { proof: respell(proof!, index) }))
      expectRefusal(res, { status: 401, code: 'invalid_dpop_proof', errorScheme: 'DPoP' })
      expect(res.body.detail).toBe('malformed DPoP proof')
      expect(store.calls - marked, 'replay store calls').toBe(0)
      expectAccepted(await rec.call(app, await dpopRequest(app, key, token, { proof: proof! })), {
        caller: { id: 'svc-a', source: 'token' },
        scopes: ['orders:read'],
        binding: 'dpop',
      })
    },
  )

  it('never a 5xx', () => {
    expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
  })
})
