import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  createDpopKey,
  createDpopProof,
  createTestCa,
  startTestIssuer,
  type DpopKey,
  type IssuedCertificate,
  type TestCa,
  type TestIssuer,
} from '@callsign/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { explain, stepStatus, type ExplainInput, type Explanation } from '../src/explain.js'

const CLI = join(import.meta.dirname, '..', 'dist', 'cli.js')
const WEB = 'spiffe://example.org/ns/web/sa/frontend'
const URL_CALLED = 'https://orders.example/orders'

let issuer: TestIssuer
let ca: TestCa
let cert: IssuedCertificate
let other: IssuedCertificate
let stranger: IssuedCertificate
let dpopKey: DpopKey
let dir: string
const options = (extra: Record<string, unknown> = {}) => ({
  issuers: { issuer: issuer.issuer, audience: 'orders' },
  callers: { 'spiffe://example.org/ns/web/*': ['orders:read'] },
  ...extra,
})

beforeAll(async () => {
  ;[issuer, ca, dpopKey] = await Promise.all([startTestIssuer(), createTestCa(), createDpopKey()])
  ;[cert, other] = await Promise.all([ca.issueCertificate({ spiffeId: WEB }), ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/other' })])
  stranger = await (await createTestCa()).issueCertificate({ spiffeId: WEB })
  dir = await mkdtemp(join(tmpdir(), 'callsign-explain-steps-'))
  await writeFile(join(dir, 'options.json'), JSON.stringify(options()))
})
afterAll(async () => {
  await issuer?.close()
  await rm(dir, { recursive: true, force: true })
})

const sign = (claims: Record<string, unknown> = {}, signOptions: Record<string, unknown> = {}) =>
  issuer.signAccessToken({ sub: 'alice', act: { sub: WEB }, scope: 'orders:read', ...claims }, { audience: 'orders', ...signOptions })
const statusOf = (result: Explanation, check: string) => {
  const step = result.steps.find((s) => s.check === check)
  return step && stepStatus(step)
}

/** One refusal per kind: each code, and for invalid_token each check. */
const SCENARIOS: Array<[string, string, string, () => Promise<Omit<ExplainInput, 'options'> & { options?: ExplainInput['options'] }>]> = [
  ['no credentials', 'credentials_missing', 'credentials', async () => ({ certificatePem: cert.certPem })],
  [
    'no client certificate with mtls required',
    'mtls_required',
    'client certificate',
    async () => ({ options: options({ mtls: 'required' }), token: await sign() }),
  ],
  ['an opaque token without introspection', 'invalid_token', 'header', async () => ({ token: 'opaque-token-value', certificatePem: cert.certPem })],
  ['an untrusted issuer', 'invalid_token', 'issuer', async () => ({ token: await sign({}, { issuer: 'https://evil.example' }), certificatePem: cert.certPem })],
  ['an unknown kid', 'invalid_token', 'signature', async () => ({ token: await sign({}, { header: { kid: 'unknown-kid' } }), certificatePem: cert.certPem })],
  ['an expired token', 'invalid_token', 'time', async () => ({ token: await sign({}, { expiresInSeconds: -600 }), certificatePem: cert.certPem })],
  ['another audience', 'invalid_token', 'audience', async () => ({ token: await sign({}, { audience: 'billing' }), certificatePem: cert.certPem })],
  ['a malformed scope claim', 'invalid_token', 'claims', async () => ({ token: await sign({ scope: 42 }), certificatePem: cert.certPem })],
  [
    'a token bound to another certificate',
    'invalid_token',
    'binding',
    async () => ({ token: await sign({ cnf: { 'x5t#S256': other.x5tS256 } }), certificatePem: cert.certPem }),
  ],
  ['a DPoP proof for another URL', 'invalid_dpop_proof', 'binding', async () => dpopCall({ url: 'https://orders.example/elsewhere' })],
  [
    'a token for another service',
    'invalid_token',
    'caller',
    async () => ({ token: await sign({ act: undefined, client_id: 'spiffe://example.org/ns/web/sa/other' }), certificatePem: cert.certPem }),
  ],
  [
    'a scope beyond the caller allowance',
    'caller_scope_exceeded',
    'rule',
    async () => ({ token: await sign({ scope: 'orders:read orders:write' }), certificatePem: cert.certPem, rule: { scopes: ['orders:write'] } }),
  ],
  [
    'a scope the token lacks',
    'insufficient_scope',
    'rule',
    async () => ({ token: await sign(), certificatePem: cert.certPem, rule: { scopes: ['orders:delete'] } }),
  ],
  [
    'a user where none is allowed',
    'on_behalf_of_forbidden',
    'rule',
    async () => ({ token: await sign(), certificatePem: cert.certPem, rule: { onBehalfOf: 'forbidden' } }),
  ],
  [
    'no user where one is required',
    'on_behalf_of_required',
    'rule',
    async () => ({ token: await sign({ sub: WEB, act: undefined, client_id: WEB }), certificatePem: cert.certPem, rule: { onBehalfOf: 'required' } }),
  ],
  [
    'a caller the route does not allow',
    'caller_forbidden',
    'rule',
    async () => ({ token: await sign(), certificatePem: cert.certPem, rule: { callers: ['spiffe://example.org/ns/batch/*'] } }),
  ],
  [
    'a certificate from another CA',
    'peer_unauthorized',
    'client certificate',
    async () => ({ token: await sign(), certificatePem: stranger.certPem, caPem: ca.certPem }),
  ],
  ['a malformed Authorization value', 'invalid_request', 'credentials', async () => ({ token: 'two words', certificatePem: cert.certPem })],
  [
    'a delegation chain deeper than allowed',
    'invalid_token',
    'delegation',
    async () => ({
      options: options({ delegation: { maxDepth: 1 } }),
      token: await sign({ act: { sub: WEB, act: { sub: 'spiffe://example.org/ns/edge/sa/gw' } } }),
      certificatePem: cert.certPem,
    }),
  ],
  [
    'issuer keys that cannot be fetched',
    'keys_unavailable',
    'signature',
    async () => ({
      options: options({ issuers: { issuer: issuer.issuer, audience: 'orders', jwksUri: 'http://127.0.0.1:9/jwks.json' }, jwks: { timeoutSeconds: 1 } }),
      token: await sign(),
      certificatePem: cert.certPem,
    }),
  ],
  [
    'a replay store that fails',
    'replay_store_unavailable',
    'binding',
    async () => ({
      options: options({ dpop: { replayStore: { markUsed: () => Promise.reject(new Error('down')) } } }),
      ...(await dpopCall({ url: URL_CALLED })),
    }),
  ],
  [
    'a revocation check that fails',
    'revocation_unavailable',
    'signature',
    async () => ({
      options: options({
        revocation: {
          isRevoked: () => {
            throw new Error('down')
          },
        },
      }),
      token: await sign(),
      certificatePem: cert.certPem,
    }),
  ],
  [
    'a DPoP proof without the server nonce',
    'use_dpop_nonce',
    'binding',
    async () => ({
      options: options({ dpop: { nonce: { secret: 'explain-steps-nonce-secret-0123456789abcdef' } } }),
      ...(await dpopCall({ url: URL_CALLED })),
    }),
  ],
]

async function dpopCall({ url }: { url: string }) {
  const token = await sign({ cnf: { jkt: dpopKey.jkt } })
  return { token, dpopProof: await createDpopProof(dpopKey, { method: 'GET', url, accessToken: token }), certificatePem: cert.certPem, url: URL_CALLED }
}

describe('explain() names the failed check and its status', () => {
  it.each(SCENARIOS)('%s: %s, failed at the %s step', async (_case, code, check, build) => {
    const { options: own, ...call } = await build()
    const result = await explain({ options: own ?? options(), ...call })
    expect([result.allowed, result.code]).toEqual([false, code])
    expect(result.steps.filter((s) => s.ok === false && s.check !== 'issuer keys').map((s) => s.check)).toEqual([check])
    expect(statusOf(result, check)).toBe('fail')
    // Nothing after the deciding failure passes; nothing prints an expectation it never compared.
    expect(JSON.stringify(result.steps)).not.toContain('expected one of []')
    for (const s of result.steps) expect(['pass', 'fail', 'not-checked']).toContain(stepStatus(s))
  })

  it('an untrusted issuer: issuer fails with the compared iss, and the later checks are not checked', async () => {
    const result = await explain({ options: options(), token: await sign({}, { issuer: 'https://evil.example' }), certificatePem: cert.certPem })
    expect(result.steps.find((s) => s.check === 'issuer')?.compared).toEqual([{ field: 'iss', presented: 'https://evil.example', expected: [issuer.issuer] }])
    expect(['audience', 'time', 'signature', 'binding', 'caller', 'rule'].map((check) => statusOf(result, check))).toEqual(Array(6).fill('not-checked'))
    expect(['client certificate', 'credentials', 'header'].map((check) => statusOf(result, check))).toEqual(['pass', 'pass', 'pass'])
  })

  it('an unknown kid fails the signature step, not the issuer step', async () => {
    const result = await explain({ options: options(), token: await sign({}, { header: { kid: 'unknown-kid' } }), certificatePem: cert.certPem })
    expect([statusOf(result, 'issuer'), statusOf(result, 'signature'), statusOf(result, 'time')]).toEqual(['pass', 'fail', 'not-checked'])
  })

  it('another audience shows aud against the audiences', async () => {
    const result = await explain({ options: options(), token: await sign({}, { audience: 'billing' }), certificatePem: cert.certPem })
    expect(result.steps.find((s) => s.check === 'audience')?.compared).toEqual([{ field: 'aud', presented: 'billing', expected: ['orders'] }])
    expect([statusOf(result, 'signature'), statusOf(result, 'time')]).toEqual(['pass', 'pass'])
  })

  it('a token bound to another certificate shows cnf["x5t#S256"] against the certificate', async () => {
    const result = await explain({ options: options(), token: await sign({ cnf: { 'x5t#S256': other.x5tS256 } }), certificatePem: cert.certPem })
    expect(result.steps.find((s) => s.check === 'binding')?.compared).toEqual([{ field: 'cnf["x5t#S256"]', presented: other.x5tS256, expected: cert.x5tS256 }])
  })

  it('a DPoP proof for another URL shows htu against the request URL', async () => {
    const result = await explain({ options: options(), ...(await dpopCall({ url: 'https://orders.example/elsewhere' })) })
    expect(result.steps.find((s) => s.check === 'binding')?.compared).toEqual([
      { field: 'htu', presented: 'https://orders.example/elsewhere', expected: URL_CALLED },
    ])
  })

  it("a proof by another key shows cnf.jkt against the proof key's thumbprint", async () => {
    const [token, thief] = await Promise.all([sign({ cnf: { jkt: dpopKey.jkt } }), createDpopKey()])
    const dpopProof = await createDpopProof(thief, { method: 'GET', url: URL_CALLED, accessToken: token })
    const result = await explain({ options: options(), token, dpopProof, certificatePem: cert.certPem, url: URL_CALLED })
    expect(result.steps.find((s) => s.check === 'binding')?.compared).toEqual([{ field: 'cnf.jkt', presented: dpopKey.jkt, expected: thief.jkt }])
  })
})

const cli = (args: string[]) =>
  promisify(execFile)(process.execPath, [CLI, ...args], { encoding: 'utf8' }).then(
    (r) => ({ code: 0, stdout: r.stdout }),
    (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
  )

describe('callsign explain (CLI) prints each step with its status', () => {
  it('text: FAIL on the real step, "not checked" after it, the compared values under it', async () => {
    const out = await cli(['explain', '--options', join(dir, 'options.json'), '--token', await sign({}, { audience: 'billing' })])
    expect(out.code).toBe(1)
    expect(out.stdout).toMatch(/^FAIL {2}audience +aud "billing"; expected one of \["orders"\] -> invalid_token: token audience does not match$/m)
    expect(out.stdout).toMatch(/^ +aud: presented "billing", expected \["orders"\]$/m)
    expect(out.stdout).toMatch(/^ {4} {2}caller +not checked: /m)
    expect(out.stdout).toMatch(/^PASS {2}signature /m)
  })

  it('--json: status per step and the compared values', async () => {
    const out = await cli(['explain', '--options', join(dir, 'options.json'), '--token', await sign({}, { issuer: 'https://evil.example' }), '--json'])
    expect(out.code).toBe(1)
    const steps = (JSON.parse(out.stdout) as { steps: Array<{ check: string; status: string; compared?: unknown }> }).steps
    expect(Object.fromEntries(steps.map((s) => [s.check, s.status]))).toMatchObject({
      credentials: 'pass',
      header: 'pass',
      issuer: 'fail',
      audience: 'not-checked',
      signature: 'not-checked',
      rule: 'not-checked',
    })
    expect(steps.find((s) => s.check === 'issuer')?.compared).toEqual([{ field: 'iss', presented: 'https://evil.example', expected: [issuer.issuer] }])
  })
})
