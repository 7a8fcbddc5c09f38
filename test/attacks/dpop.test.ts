/**
 * Attacks on DPoP (RFC 9449), one test per attack, against every adapter over real HTTPS. Each
 * asserts the exact status and challenge error AND that nothing else happened: a refused proof
 * never reaches the replay store (`markUsed` is counted), and no issuer is contacted (the guards'
 * keys are warm). Never a 5xx.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CallsignOptions } from '@callsign/core'
import { createDpopKey, createDpopProof, type DpopKey, type TestIssuer } from '@callsign/testing'
import { calculateJwkThumbprint } from 'jose'
import { DpopNonces } from '../../packages/core/src/dpop-nonce.js'
import { adapters, type RunningApp } from '../support/adapters.js'
import { ed25519SPlusL, es256HighS, statusRecorder, type StatusRecorder } from '../support/attacks.js'
import type { CallOptions, CallResult } from '../support/client.js'
import { athOf, countingReplayStore, createClock, dpopRequest, htuFor, type CountingReplayStore, type DpopRequest } from '../support/dpop.js'
import { expectAccepted, expectRefusal, type RefusalExpectation } from '../support/expectations.js'
import { createFixture, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'

let fx: Fixture
let A: TestIssuer
let es256: DpopKey
let eddsa: DpopKey
let ps256: DpopKey
let other: DpopKey

beforeAll(async () => {
  ;[fx, es256, eddsa, ps256, other] = await Promise.all([
    createFixture(),
    createDpopKey('ES256'),
    createDpopKey('EdDSA'),
    createDpopKey('PS256'),
    createDpopKey('ES256'),
  ])
  A = await fx.startIssuer({ discovery: 'none' })
})
afterAll(() => fx?.close())

/** Proof algorithms the guards accept (advertised in the DPoP challenge). */
const ALGS = 'ES256 EdDSA'
const WINDOW = 60
const SECRET = 'attack-suite-dpop-nonce-secret-0123456789'
const OTHER_SECRET = 'another-deployment-nonce-secret-9876543210'
const PUBLIC_ORIGIN = 'https://orders.example.org'
const SVC = { sub: 'svc-a', client_id: 'svc-a', scope: 'orders:read' }
/** A service token bound to `key` (`cnf.jkt`), or unbound. */
const bound = (key: { jkt: string } | undefined, claims: Record<string, unknown> = {}): Promise<string> =>
  sign(A, { ...SVC, ...claims }, key ? { dpopJkt: key.jkt } : {})

const PROOF: RefusalExpectation = { status: 401, code: 'invalid_dpop_proof', errorScheme: 'DPoP' }
const NONCE: RefusalExpectation = { status: 401, code: 'use_dpop_nonce', errorScheme: 'DPoP' }
const nowS = (): number => Math.floor(Date.now() / 1000)

type AppName = 'main' | 'nonce' | 'origin'

describe.each(adapters)('$name: DPoP attacks', (adapter) => {
  let rec: StatusRecorder
  const clock = createClock()
  const apps = {} as Record<AppName, RunningApp>
  const stores = {} as Record<AppName, CountingReplayStore>

  beforeAll(async () => {
    rec = statusRecorder(fx.call)
    const base = (name: AppName, dpop: NonNullable<CallsignOptions['dpop']> = {}): CallsignOptions => {
      stores[name] = countingReplayStore()
      return {
        issuers: issuerOption(A, { explicitJwks: true }),
        dpop: { algorithms: ['ES256', 'EdDSA'], replayStore: stores[name], ...dpop },
        now: clock.now,
        jwks: { cooldownSeconds: 600 },
        logger: quiet,
      }
    }
    const options: Record<AppName, CallsignOptions> = {
      main: base('main'),
      nonce: base('nonce', { nonce: { secret: SECRET, windowSeconds: WINDOW } }),
      origin: base('origin', { origin: PUBLIC_ORIGIN }),
    }
    for (const [name, opts] of Object.entries(options)) {
      apps[name as AppName] = await fx.start(adapter, opts)
      await apps[name as AppName].guard.ready()
    }
  })

  /** Send a refused request; assert the refusal, its detail, an untouched replay store and no issuer request. */
  async function attack(app: AppName, request: CallOptions, expected: RefusalExpectation, detail?: string | RegExp): Promise<CallResult> {
    const calls = stores[app].calls
    const fetches = A.requestCount()
    const res = await rec.call(apps[app], request)
    expectRefusal(res, { dpopAlgs: ALGS, ...expected })
    if (detail !== undefined) expect(res.body.detail, res.text.slice(0, 200)).toMatch(detail)
    expect(stores[app].calls, 'replay store reached by a refused proof').toBe(calls)
    expect(A.requestCount(), 'issuer requests').toBe(fetches)
    return res
  }
  /** A request with a default proof of `key` for a token bound to it, with proof options/switches. */
  const withProof = async (
    app: AppName,
    proofOptions: DpopRequest['proofOptions'] = {},
    request: DpopRequest = {},
    key: DpopKey = es256,
  ): Promise<CallOptions> => dpopRequest(apps[app], key, await bound(key), { ...request, proofOptions: { ...request.proofOptions, ...proofOptions } })
  const accepted = async (app: AppName, request: CallOptions): Promise<CallResult> => {
    const calls = stores[app].calls
    const res = await rec.call(apps[app], request)
    expectAccepted(res, { caller: { id: 'svc-a', source: 'token' }, scopes: ['orders:read'], binding: 'dpop' })
    expect(stores[app].calls).toBe(calls + 1)
    return res
  }

  describe('RFC 9449 §4.3 checks, violated one at a time', () => {
    it('structure: not a JWS, 2 or 4 parts, empty, padded, JWE-shaped, non-object header, over 8 KiB', async () => {
      const proof = await createDpopProof(es256, { method: 'GET', url: htuFor(apps.main), accessToken: await bound(es256) })
      const [h, p, s] = proof.split('.') as [string, string, string]
      const big = await createDpopProof(es256, { method: 'GET', url: htuFor(apps.main), extraClaims: { pad: 'x'.repeat(8 * 1024) } })
      for (const bad of [
        'x',
        `${h}.${p}`,
        `${proof}.${s}`,
        `${h}.${p}.${s}=`,
        `${h}..${s}`,
        `${h}.${p}.${s}.x.y`,
        `${Buffer.from('[]').toString('base64url')}.${p}.${s}`,
        big,
        '',
      ]) {
        await attack('main', await withProof('main', {}, { proof: bad }), PROOF, /malformed DPoP proof/)
      }
    })

    it('typ: missing, "jwt", "at+jwt", "application/dpop+jwt", not a string', async () => {
      for (const typ of [null, 'jwt', 'at+jwt', 'application/dpop+jwt', 'dpop+jwt '])
        await attack('main', await withProof('main', { typ }), PROOF, 'DPoP proof typ must be dpop+jwt')
      await attack('main', await withProof('main', { extraHeader: { typ: ['dpop+jwt'] } }), PROOF, 'DPoP proof typ must be dpop+jwt')
    })

    it('alg: HS256 header, alg not in dpop.algorithms (a valid PS256 proof), ES384 or RS256 header on an ES256 key', async () => {
      await attack('main', await withProof('main', { alg: 'HS256' }), PROOF, 'DPoP proof algorithm not allowed')
      await attack('main', await withProof('main', {}, {}, ps256), PROOF, 'DPoP proof algorithm not allowed')
      await attack('main', await withProof('main', { alg: 'ES384' }), PROOF, 'DPoP proof algorithm not allowed')
      await attack('main', await withProof('main', { extraHeader: { alg: 'EdDSA' } }), PROOF, /malformed DPoP proof jwk|signature invalid/)
    })

    it('proof signed with "none" (every spelling), with and without a signature', async () => {
      for (const alg of ['none', 'None', 'NONE']) {
        await attack('main', await withProof('main', { unsigned: true, alg }), PROOF, 'malformed DPoP proof')
        await attack('main', await withProof('main', { alg }), PROOF, 'DPoP proof algorithm not allowed')
      }
    })

    it('jwk: missing, not an object, symmetric (k), wrong curve, use "enc", alg of another curve', async () => {
      const pub = es256.publicJwk as Record<string, unknown>
      await attack('main', await withProof('main', { omitJwk: true }), PROOF, 'DPoP proof has no jwk')
      for (const jwk of ['x', ['x'], null]) await attack('main', await withProof('main', { extraHeader: { jwk } }), PROOF, 'DPoP proof has no jwk')
      await attack('main', await withProof('main', { jwk: { kty: 'oct', k: 'c2VjcmV0' } }), PROOF, 'DPoP proof jwk contains a private key')
      await attack('main', await withProof('main', { jwk: { ...pub, crv: 'P-384' } }), PROOF, /malformed DPoP proof jwk/)
      await attack('main', await withProof('main', { jwk: { ...pub, use: 'enc' } }), PROOF, 'malformed DPoP proof jwk')
      await attack('main', await withProof('main', { jwk: { ...pub, alg: 'ES384' } }), PROOF, 'malformed DPoP proof jwk')
      await attack('main', await withProof('main', { jwk: { kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' } }), PROOF, 'malformed DPoP proof jwk')
    })

    it('private key in jwk (d, and RSA private members): refused before anything is verified', async () => {
      await attack('main', await withProof('main', { includePrivateKey: true }), PROOF, 'DPoP proof jwk contains a private key')
      for (const member of ['p', 'q', 'dp', 'dq', 'qi', 'oth', 'r', 't']) {
        await attack('main', await withProof('main', { jwk: { ...es256.publicJwk, [member]: 'AQAB' } }), PROOF, 'DPoP proof jwk contains a private key')
      }
    })

    it('signature: made by another key than the jwk, payload tampered, all-zero, Ed25519 S + L', async () => {
      await attack('main', await withProof('main', { signWith: other }), PROOF, 'DPoP proof signature invalid')
      await attack('main', await withProof('main', { tamper: true }), PROOF, 'DPoP proof signature invalid')
      const request = await withProof('main')
      const [h, p] = String((request.headers as Record<string, string>).dpop).split('.')
      await attack('main', { ...request, headers: { dpop: `${h}.${p}.${Buffer.alloc(64).toString('base64url')}` } }, PROOF, 'DPoP proof signature invalid')
      const token = await bound(eddsa)
      const edProof = await createDpopProof(eddsa, { method: 'GET', url: htuFor(apps.main), accessToken: token })
      await attack('main', await dpopRequest(apps.main, eddsa, token, { proof: ed25519SPlusL(edProof) }), PROOF, 'DPoP proof signature invalid')
      await accepted('main', await dpopRequest(apps.main, eddsa, token, { proof: edProof }))
    })

    it('htm: another method, lower case, padded, not a string', async () => {
      for (const htm of ['POST', 'get', 'GET ', 'HEAD'])
        await attack('main', await withProof('main', { htm }), PROOF, 'DPoP proof htm does not match the request method')
      await attack('main', await withProof('main', { extraClaims: { htm: ['GET'] } }), PROOF, 'DPoP proof htm does not match the request method')
    })

    it('htu: another path, host, port, scheme; userinfo; relative; not a string', async () => {
      const url = new URL(apps.main.url)
      const htus = [
        htuFor(apps.main, '/orders'),
        `https://other.example${url.port ? `:${url.port}` : ''}/whoami`,
        `https://127.0.0.1:${Number(url.port) + 1}/whoami`,
        htuFor(apps.main).replace('https:', 'http:'),
        htuFor(apps.main).replace('https://', 'https://user@'),
        '/whoami',
        `${htuFor(apps.main)}/`,
        `${htuFor(apps.main)}%2F`,
      ]
      for (const htu of htus) await attack('main', await withProof('main', { htu }), PROOF, 'DPoP proof htu does not match the request URI')
      await attack('main', await withProof('main', { extraClaims: { htu: 42 } }), PROOF, 'DPoP proof htu does not match the request URI')
    })

    it('iat: too old, in the future, missing, not a number', async () => {
      await attack('main', await withProof('main', { iat: nowS() - WINDOW - 30 - 2 }), PROOF, 'DPoP proof is too old')
      await attack('main', await withProof('main', { iat: nowS() + 32 }), PROOF, 'DPoP proof is issued in the future')
      await attack('main', await withProof('main', { extraClaims: { iat: undefined } }), PROOF, 'malformed DPoP proof')
      await attack('main', await withProof('main', { extraClaims: { iat: String(nowS()) } }), PROOF, 'malformed DPoP proof iat')
    })

    it('jti: missing, empty, over 256 characters, not a string', async () => {
      await attack('main', await withProof('main', { jti: null }), PROOF, 'malformed DPoP proof')
      for (const jti of ['', 'j'.repeat(257)]) await attack('main', await withProof('main', { jti }), PROOF, 'malformed DPoP proof jti')
      await attack('main', await withProof('main', { extraClaims: { jti: 7 } }), PROOF, 'malformed DPoP proof jti')
    })

    it('exp in the past, nbf in the future, crit and b64 headers', async () => {
      await attack('main', await withProof('main', { extraClaims: { exp: nowS() - 120 } }), PROOF, 'malformed DPoP proof')
      await attack('main', await withProof('main', { extraClaims: { nbf: nowS() + 120 } }), PROOF, 'malformed DPoP proof')
      await attack('main', await withProof('main', { extraClaims: { exp: 'later' } }), PROOF, 'malformed DPoP proof')
      await attack('main', await withProof('main', { extraHeader: { crit: ['x-custom'], 'x-custom': 1 } }), PROOF, 'malformed DPoP proof')
      await attack('main', await withProof('main', { extraHeader: { b64: true } }), PROOF, 'malformed DPoP proof')
    })

    it('proof for another token (ath): missing, hash of another token, of the token in another case, garbage', async () => {
      const another = await bound(es256)
      for (const ath of [null, athOf(another), athOf(another).toUpperCase(), 'x', '']) {
        await attack('main', await withProof('main', { ath }), PROOF, 'DPoP proof ath does not match the access token')
      }
    })

    it('one key, several thumbprints: the proof key re-spelled (x of 33 octets with a leading zero, padded, non-canonical last character), the token bound to that spelling: refused', async () => {
      const x = es256.publicJwk.x!
      const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
      const spellings = [
        Buffer.concat([Buffer.alloc(1), Buffer.from(x, 'base64url')]).toString('base64url'),
        `${x}=`,
        x.slice(0, -1) + last[last.indexOf(x.at(-1)!) + 1],
      ]
      for (const spelling of spellings) {
        const jwk = { ...es256.publicJwk, x: spelling }
        const jkt = await calculateJwkThumbprint(jwk)
        expect(jkt).not.toBe(es256.jkt) // another thumbprint for the same key: a fresh cnf.jkt and replay key
        await attack('main', await dpopRequest(apps.main, es256, await bound({ jkt }), { proofOptions: { jwk } }), PROOF, 'malformed DPoP proof jwk')
      }
    })

    it("proof key is not the token's cnf.jkt: invalid_token in the DPoP challenge", async () => {
      const token = await bound(es256)
      await attack(
        'main',
        await dpopRequest(apps.main, es256, token, { proofKey: other }),
        { status: 401, code: 'invalid_token', errorScheme: 'DPoP' },
        'token is bound to another DPoP key',
      )
    })

    it('never a 5xx in this family', () => {
      expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
    })
  })

  describe('replay and cross-endpoint use', () => {
    it('replay: the same proof twice, and its ECDSA high-S twin (same jti): refused by the replay store', async () => {
      const token = await bound(es256)
      const proof = await createDpopProof(es256, { method: 'GET', url: htuFor(apps.main), accessToken: token })
      const request = await dpopRequest(apps.main, es256, token, { proof })
      await accepted('main', request)
      for (const replay of [proof, es256HighS(proof)]) {
        const calls = stores.main.calls
        const res = await rec.call(apps.main, await dpopRequest(apps.main, es256, token, { proof: replay }))
        expectRefusal(res, { ...PROOF, dpopAlgs: ALGS })
        expect(res.body.detail).toBe('DPoP proof has already been used')
        expect(stores.main.calls, 'a replay is detected by the store').toBe(calls + 1)
      }
    })

    it('cross-endpoint: a used or unused proof on another path, with another method, for another host', async () => {
      const token = await bound(es256)
      const forOrders = await createDpopProof(es256, { method: 'GET', url: htuFor(apps.main, '/orders'), accessToken: token })
      await accepted('main', await dpopRequest(apps.main, es256, token, { path: '/orders', proof: forOrders }))
      await attack(
        'main',
        await dpopRequest(apps.main, es256, token, { path: '/whoami', proof: forOrders }),
        PROOF,
        'DPoP proof htu does not match the request URI',
      )
      const unused = await createDpopProof(es256, { method: 'GET', url: htuFor(apps.main, '/orders'), accessToken: token })
      await attack(
        'main',
        await dpopRequest(apps.main, es256, token, { path: '/whoami', proof: unused }),
        PROOF,
        'DPoP proof htu does not match the request URI',
      )
      await attack(
        'main',
        await dpopRequest(apps.main, es256, token, { method: 'POST', path: '/orders', proof: unused }),
        PROOF,
        'DPoP proof htm does not match the request method',
      )
      const otherHost = await createDpopProof(es256, { method: 'GET', url: 'https://orders.example.org/orders', accessToken: token })
      await attack(
        'main',
        await dpopRequest(apps.main, es256, token, { path: '/orders', proof: otherHost }),
        PROOF,
        'DPoP proof htu does not match the request URI',
      )
      // A proof minted for another host, sent with a Host header naming that host. Without dpop.origin the expected
      // htu follows the Host header (documented: README "htu behind a proxy"), so only the replay store and the
      // token's aud stand in the way; with dpop.origin the origin is pinned and the Host header cannot move it.
      const elsewhere = await createDpopProof(es256, { method: 'GET', url: 'https://other.example/orders', accessToken: token })
      await attack(
        'origin',
        await dpopRequest(apps.origin, es256, token, { path: '/orders', proof: elsewhere, headers: { host: 'other.example' } }),
        PROOF,
        'DPoP proof htu does not match the request URI',
      )
      await attack(
        'origin',
        await dpopRequest(apps.origin, es256, token, { path: '/orders', proof: unused, headers: { host: new URL(apps.origin.url).host } }),
        PROOF,
        'DPoP proof htu does not match the request URI',
      )
      await accepted('origin', await dpopRequest(apps.origin, es256, token, { path: '/orders', proof: otherHost, headers: { host: 'evil.example' } }))
    })

    it('a Host header that smuggles a path, query or fragment cannot redirect a proof to another endpoint (empty Host: see core fuzz htu.test.ts)', async () => {
      const token = await bound(es256)
      const host = new URL(apps.main.url).host
      for (const forged of [`${host}/whoami?`, `${host}/whoami#`, `${host}/whoami?x=`, `${host}\\whoami?`, `evil@${host}`]) {
        const proof = await createDpopProof(es256, { method: 'GET', url: htuFor(apps.main, '/whoami'), accessToken: token })
        await attack(
          'main',
          await dpopRequest(apps.main, es256, token, { path: '/orders', proof, headers: { host: forged } }),
          { status: 400, code: 'invalid_request', errorScheme: 'DPoP' },
          'request target cannot be checked against a DPoP proof',
        )
      }
      // Where dpop.origin pins the origin, the Host only picks among configured origins.
      const pinned = await createDpopProof(es256, { method: 'GET', url: `${PUBLIC_ORIGIN}/whoami`, accessToken: token })
      await attack(
        'origin',
        await dpopRequest(apps.origin, es256, token, { path: '/orders', proof: pinned, headers: { host: 'orders.example.org/whoami?' } }),
        PROOF,
        'DPoP proof htu does not match the request URI',
      )
    })

    it('never a 5xx in this family', () => {
      expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
    })
  })

  describe('nonces, downgrade, headers', () => {
    it('nonce misuse: missing, stale, forged, from another secret, not a string; a valid nonce never saves a bad proof', async () => {
      const t = clock.freeze()
      try {
        const res = await attack('nonce', await withProof('nonce', { iat: t }), NONCE, 'a fresh DPoP nonce is required')
        const nonce = res.headers['dpop-nonce'] as string
        expect(nonce).toMatch(/^[\x21-\x7e]+$/)
        const [slice] = nonce.split('.')
        const foreign = new DpopNonces(Buffer.from(OTHER_SECRET), WINDOW, clock.now).current()
        for (const bad of [`${slice}.AAAAAAAAAAAAAAAAAAAAAA`, 'made-up-nonce', `${nonce}x`, ` ${nonce}`, foreign, nonce.toUpperCase()]) {
          const refused = await attack('nonce', await withProof('nonce', { iat: t, nonce: bad }), NONCE, 'a fresh DPoP nonce is required')
          expect(refused.headers['dpop-nonce']).toBe(nonce)
        }
        await attack('nonce', await withProof('nonce', { iat: t, extraClaims: { nonce: 12345 } }), NONCE, 'a fresh DPoP nonce is required')
        await attack('nonce', await withProof('nonce', { iat: t, nonce, htm: 'POST' }), PROOF, 'DPoP proof htm does not match the request method')
        await accepted('nonce', await withProof('nonce', { iat: t, nonce }))
        // Two windows later the nonce is stale.
        const later = clock.advance(2 * WINDOW)
        await attack('nonce', await withProof('nonce', { iat: later, nonce }), NONCE, 'a fresh DPoP nonce is required')
      } finally {
        clock.release()
      }
    })

    it('downgrade: a DPoP-bound token sent as Bearer (with or without a valid proof alongside)', async () => {
      const token = await bound(es256)
      const proof = await createDpopProof(es256, { method: 'GET', url: htuFor(apps.main), accessToken: token })
      for (const scheme of ['Bearer', 'bearer']) {
        await attack('main', { authorization: `${scheme} ${token}` }, { status: 401, code: 'invalid_token' }, 'DPoP-bound token presented as a bearer token')
        await attack(
          'main',
          { authorization: `${scheme} ${token}`, headers: { dpop: proof } },
          { status: 401, code: 'invalid_token' },
          'DPoP-bound token presented as a bearer token',
        )
      }
      // The other way round: the DPoP scheme with an unbound token and a valid proof.
      const unbound = await bound(undefined)
      await attack(
        'main',
        await dpopRequest(apps.main, es256, unbound),
        { status: 401, code: 'invalid_token', errorScheme: 'DPoP' },
        'DPoP scheme used with a token that is not DPoP-bound',
      )
      // And the untouched proof is still good afterwards: nothing was consumed.
      await accepted('main', await dpopRequest(apps.main, es256, token, { proof }))
    })

    it('two DPoP headers, two proofs in one header, no DPoP header', async () => {
      const token = await bound(es256)
      const proof = () => createDpopProof(es256, { method: 'GET', url: htuFor(apps.main), accessToken: token, jti: randomUUID() })
      const [p1, p2] = [await proof(), await proof()]
      await attack('main', await dpopRequest(apps.main, es256, token, { proof: [p1, p2] }), PROOF, 'more than one DPoP header')
      await attack('main', await dpopRequest(apps.main, es256, token, { proof: [p1, p1] }), PROOF, 'more than one DPoP header')
      await attack('main', await dpopRequest(apps.main, es256, token, { proof: `${p1}, ${p2}` }), PROOF, 'malformed DPoP proof')
      await attack('main', await dpopRequest(apps.main, es256, token, { proof: null }), PROOF, 'DPoP proof missing')
      await accepted('main', await dpopRequest(apps.main, es256, token, { proof: p2 }))
    })

    it('never a 5xx in this family', () => {
      expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
    })
  })
})
