// The test kit checks its options like core does: a misspelled option throws a TypeError naming it,
// never a token, certificate or proof that silently lacks what the test asked for.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDpopKey, createDpopProof, createTestCa, startForwardingProxy, startTestIssuer, xfccElement, type TestCa, type TestIssuer } from '../src/index.js'

let issuer: TestIssuer
let ca: TestCa
beforeAll(async () => {
  ;[issuer, ca] = await Promise.all([startTestIssuer(), createTestCa()])
})
afterAll(async () => {
  await issuer?.close()
})

describe('option checks', () => {
  it('signAccessToken: a misspelled option is a TypeError with the likely name, not an unbound token', async () => {
    const options = { jkt: 'abc' } as never
    await expect(issuer.signAccessToken({ sub: 'alice' }, options)).rejects.toThrow(
      new TypeError(
        'signAccessToken: unknown option "jkt" (did you mean "dpopJkt"?); known: alg, kid, typ, header, audience, expiresInSeconds, issuedAt, notBefore, omit, issuer, dpopJkt, x5tS256',
      ),
    )
    await expect(issuer.signAccessToken({}, { expiresIn: 60 } as never)).rejects.toThrow(/unknown option "expiresIn" \(did you mean "expiresInSeconds"\?\)/)
    await expect(issuer.signAccessToken({}, { audiense: 'x' } as never)).rejects.toThrow(/did you mean "audience"/)
    await expect(issuer.signAccessToken({}, 'x' as never)).rejects.toThrow(new TypeError('signAccessToken: options must be an object'))
    // The right names work.
    expect((await issuer.signAccessToken({}, { dpopJkt: 'abc' })).split('.')).toHaveLength(3)
  })

  it('every entry point checks its options', async () => {
    const key = await createDpopKey()
    const cases: Array<[string, () => unknown]> = [
      ['startTestIssuer', () => startTestIssuer({ discover: 'none' } as never)],
      ['createTestCa', () => createTestCa({ name: 'x' } as never)],
      ['issueCertificate', () => ca.issueCertificate({ spiffeID: 'spiffe://example.org/a' } as never)],
      ['issueServerCertificate', () => ca.issueServerCertificate({ dns: ['x'] } as never)],
      ['issueCrl', () => ca.issueCrl({ revoke: [] } as never)],
      ['createDpopProof', () => createDpopProof(key, { method: 'GET', url: 'https://a/', token: 'x' } as never)],
      [
        'startForwardingProxy',
        () => startForwardingProxy({ target: 'https://127.0.0.1:1', format: 'xfcc', tls: { certPem: '', keyPem: '', caPem: '' }, ca: 'x' } as never),
      ],
      ['xfccElement', () => xfccElement({ uris: ['spiffe://example.org/a'] } as never)],
    ]
    for (const [where, call] of cases) {
      let error: unknown
      try {
        await call()
      } catch (e) {
        error = e
      }
      expect(error, where).toBeInstanceOf(TypeError)
      expect((error as Error).message, where).toMatch(new RegExp(`^${where}: unknown option `))
    }
  })
})
