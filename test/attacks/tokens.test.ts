/**
 * Attacks on the access token, one test per attack (all its known variants inside), against every
 * adapter over real HTTPS: token structure, algorithms, key selection, claims. Each asserts the
 * exact status and `WWW-Authenticate` error AND that nothing else happened: no request reached any
 * issuer (checks that need no key run on a guard that has never fetched keys; the others run
 * within the unknown-`kid` cooldown of a warm guard), and never a 5xx.
 */
import { createPublicKey, randomUUID } from 'node:crypto'
import { exportJWK, generateKeyPair, importPKCS8, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CallsignOptions } from '@callsign/core'
import type { TestIssuer } from '@callsign/testing'
import { adapters, type RunningApp } from '../support/adapters.js'
import {
  b64url,
  ed25519SPlusL,
  es256HighS,
  keepAliveAgent,
  kidOf,
  pool,
  signRaw,
  statusRecorder,
  withSignature,
  type StatusRecorder,
} from '../support/attacks.js'
import type { CallOptions, CallResult } from '../support/client.js'
import { createClock, type TestClock } from '../support/dpop.js'
import { expectAccepted, expectRefusal, type RefusalExpectation } from '../support/expectations.js'
import { AUDIENCE, createFixture, ID, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'
import { JWE_SHAPED_TOKEN } from '../support/tokens.js'

let fx: Fixture
/** The configured issuer most attacks impersonate: ES256 (current) and RS256 keys, explicit `jwksUri`. */
let A: TestIssuer
/** A second configured issuer (path `/tenant-b`, ES256). */
let B: TestIssuer
/** A configured EdDSA issuer. */
let ED: TestIssuer
/** The attacker's own "issuer": never configured; its JWKS URL is what `jku`/`x5u` point at. */
let X: TestIssuer

beforeAll(async () => {
  fx = await createFixture()
  ;[A, B, ED, X] = await Promise.all([
    fx.startIssuer({ discovery: 'none', algorithms: ['ES256', 'RS256'] }),
    fx.startIssuer({ discovery: 'none', path: '/tenant-b' }),
    fx.startIssuer({ discovery: 'none', algorithms: ['EdDSA'] }),
    fx.startIssuer({ discovery: 'none' }),
  ])
})
afterAll(() => fx?.close())

/** Requests that reached any issuer (metadata or JWKS), attacker's included. */
const issuerRequests = (): number => A.requestCount() + B.requestCount() + ED.requestCount() + X.requestCount()

const SVC = { sub: 'svc-a', client_id: 'svc-a', scope: 'orders:read' }
const now = (): number => Math.floor(Date.now() / 1000)
/** Claims of a valid service token of `issuer` (plus `extra`). */
const claimsOf = (issuer: TestIssuer, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  iss: issuer.issuer,
  aud: AUDIENCE,
  iat: now(),
  exp: now() + 300,
  jti: randomUUID(),
  ...SVC,
  ...extra,
})
const header = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ alg: 'ES256', typ: 'at+jwt', kid: A.currentKid, ...extra })
/** A syntactically fine ES256 signature that is not the right one. */
const JUNK_SIG = Buffer.alloc(64, 7).toString('base64url')
const bearer = (token: string): CallOptions => ({ authorization: `Bearer ${token}` })

const INVALID_TOKEN: RefusalExpectation = { status: 401, code: 'invalid_token' }
const INVALID_REQUEST: RefusalExpectation = { status: 400, code: 'invalid_request' }

describe.each(adapters)('$name: token attacks', (adapter) => {
  let rec: StatusRecorder
  const clock: TestClock = createClock()
  const apps = {} as Record<'main' | 'cold' | 'es256Only', RunningApp>

  beforeAll(async () => {
    rec = statusRecorder(fx.call)
    const issuers = [issuerOption(A, { explicitJwks: true }), issuerOption(B, { explicitJwks: true }), issuerOption(ED, { explicitJwks: true })]
    const options: Record<keyof typeof apps, CallsignOptions> = {
      // Warm guard: every configured issuer's keys fetched before the attacks (see below); a long
      // unknown-kid cooldown so a slow run never sees a legitimate refetch.
      main: { issuers, now: clock.now, logger: quiet, jwks: { cooldownSeconds: 600 } },
      // Never fetches keys unless an attack gets past every check that needs no key.
      cold: { issuers: issuerOption(A, { explicitJwks: true }), logger: quiet },
      es256Only: { issuers: issuerOption(A, { explicitJwks: true }), algorithms: ['ES256'], logger: quiet },
    }
    for (const [name, opts] of Object.entries(options)) apps[name as keyof typeof apps] = await fx.start(adapter, opts)
    await apps.main.guard.ready()
  })

  /**
   * Send an attack and assert the refusal, the problem `detail` (which check fired) when given,
   * and how many issuer requests it caused (default none).
   */
  async function attack(app: RunningApp, request: CallOptions, expected: RefusalExpectation, detail?: string | RegExp, fetches = 0): Promise<CallResult> {
    const before = issuerRequests()
    const res = await rec.call(app, request)
    expectRefusal(res, expected)
    if (detail !== undefined) expect(res.body.detail, `detail of ${res.text.slice(0, 200)}`).toMatch(detail)
    expect(issuerRequests() - before, 'issuer requests caused by the attack').toBe(fetches)
    return res
  }
  const accepted = async (app: RunningApp, request: CallOptions, extra: Partial<Parameters<typeof expectAccepted>[1]> = {}): Promise<CallResult> => {
    const before = issuerRequests()
    const res = await rec.call(app, request)
    expectAccepted(res, { caller: { id: 'svc-a', source: 'token' }, scopes: ['orders:read'], ...extra })
    expect(issuerRequests() - before, 'issuer requests').toBe(0)
    return res
  }

  describe('token structure (no key is ever fetched for these)', () => {
    it('malformed segments: empty, 1, 2, 4 and 6 parts', async () => {
      const valid = await sign(A, SVC)
      const [h, p, s] = valid.split('.') as [string, string, string]
      for (const token of ['..', `${h}..${s}`, `.${p}.${s}`, `${h}.${p}.`, h, `${h}.${p}`, `${h}.${p}.${s}.${s}`, `${valid}.${p}.${s}.x`]) {
        await attack(apps.cold, bearer(token), INVALID_TOKEN, 'malformed token')
      }
    })

    it('bad base64url: padding "=", "+" and "/", "~" (b64token characters, not base64url)', async () => {
      const [h, p, s] = (await sign(A, SVC)).split('.') as [string, string, string]
      for (const token of [
        `${h}.${p}.${s}=`,
        `${h}.${p}.${s}==`,
        `${h}.${p}.${s.slice(0, -2)}+/`,
        `${h}.${p}.+${s.slice(1)}`,
        `${h}.${p}./${s.slice(1)}`,
        `${h}.${p}~.${s}`,
        `${h}.${p}.${s}~`,
      ]) {
        await attack(apps.cold, bearer(token), INVALID_TOKEN, 'malformed token')
      }
      // "=" anywhere but at the end is not even a b64token (RFC 6750 §2.1): 400.
      for (const token of [`${h}=.${p}.${s}`, `${h}.${p}==.${s}`]) await attack(apps.cold, bearer(token), INVALID_REQUEST, 'malformed Bearer token')
    })

    it('characters outside b64token (non-alphabet): 400 before any parsing', async () => {
      const [h, p, s] = (await sign(A, SVC)).split('.') as [string, string, string]
      for (const token of [`${h}.${p}.${s}!`, `${h}.${p}%2E.${s}`, `${h}.${p}.${s}*`, `${h}.${p}.${s}\\`, `${h}.${p}."${s}"`]) {
        await attack(apps.cold, bearer(token), INVALID_REQUEST, /malformed Bearer token/)
      }
    })

    it('header or payload JSON that is not an object (array, string, number, null, boolean) or not JSON', async () => {
      const payload = claimsOf(A)
      for (const bad of ['[]', '["ES256"]', '"ES256"', '1', 'null', 'true', '{', '{"alg":"ES256"', 'alg=ES256']) {
        await attack(apps.cold, bearer(await signRaw(A, bad, payload)), INVALID_TOKEN, 'malformed token')
        await attack(apps.cold, bearer(await signRaw(A, header(), bad)), INVALID_TOKEN, 'malformed token')
      }
    })

    it('invalid UTF-8 in the header or payload (signed by the issuer): malformed, never decoded leniently', async () => {
      const bytes = (text: string, at: string): Uint8Array => {
        const i = text.indexOf(at)
        return Buffer.concat([Buffer.from(text.slice(0, i)), Buffer.from([0xff, 0xc3]), Buffer.from(text.slice(i))])
      }
      const payload = JSON.stringify(claimsOf(A))
      const h = JSON.stringify(header())
      // Inside alg, typ, kid, iss, sub, and a header that is not UTF-8 at all (UTF-16 BOM).
      for (const [hd, pl] of [
        [bytes(h, 'ES256'), payload],
        [bytes(h, 'at+jwt'), payload],
        [bytes(h, A.currentKid), payload],
        [h, bytes(payload, A.issuer)],
        [h, bytes(payload, 'svc-a')],
        [Buffer.from([0xfe, 0xff, 0x7b, 0x7d]), payload],
      ] as const) {
        await attack(apps.cold, bearer(await signRaw(A, hd, pl)), INVALID_TOKEN, 'malformed token')
      }
    })

    it('duplicate header keys: the lexically last wins (RFC 7515 §4) and "none" is never accepted unsigned', async () => {
      const payload = JSON.stringify(claimsOf(A))
      const kid = JSON.stringify(A.currentKid)
      // Unsigned (empty signature) and with any signature: never "none".
      const noneLast = `{"alg":"ES256","typ":"at+jwt","kid":${kid},"alg":"none"}`
      const noneFirst = `{"alg":"none","typ":"at+jwt","kid":${kid},"alg":"ES256"}`
      await attack(apps.cold, bearer(`${b64url(noneLast)}.${b64url(payload)}.`), INVALID_TOKEN, 'malformed token')
      await attack(apps.cold, bearer(`${b64url(noneFirst)}.${b64url(payload)}.`), INVALID_TOKEN, 'malformed token')
      await attack(apps.cold, bearer(await signRaw(A, noneLast, payload)), INVALID_TOKEN, 'algorithm not allowed')
      // "alg":"none" first, ES256 last: read as ES256, so the signature must be the issuer's.
      await attack(apps.main, bearer(`${b64url(noneFirst)}.${b64url(payload)}.${JUNK_SIG}`), INVALID_TOKEN, 'signature verification failed')
      // Duplicate typ / iss: the last value is the one checked.
      await attack(
        apps.cold,
        bearer(await signRaw(A, `{"alg":"ES256","typ":"at+jwt","kid":${kid},"typ":"JWT"}`, payload)),
        INVALID_TOKEN,
        'token type is not an access token',
      )
      await attack(
        apps.cold,
        bearer(await signRaw(A, header(), `{"iss":${JSON.stringify(A.issuer)},"aud":"${AUDIENCE}","exp":${now() + 300},"iss":"https://evil.example"}`)),
        INVALID_TOKEN,
        'untrusted issuer',
      )
      // And only the issuer's own signature over such bytes is honoured (the parse is the same for alg and signature).
      await accepted(apps.main, bearer(await signRaw(A, noneFirst, payload)))
    })

    it("oversized token (> 12 KiB, under Node's header limit): 400", async () => {
      const token = await sign(A, { ...SVC, padding: 'x'.repeat(10_000) })
      expect(token.length).toBeGreaterThan(12 * 1024)
      await attack(apps.cold, bearer(token), INVALID_REQUEST, 'Bearer token too large')
    })

    it('nested JWT (a JWS carrying a JWT) and JWE (5 parts) where a JWS is expected', async () => {
      const inner = await sign(A, SVC)
      await attack(apps.cold, bearer(await signRaw(A, header({ cty: 'JWT' }), inner)), INVALID_TOKEN, 'malformed token')
      await attack(apps.cold, bearer(JWE_SHAPED_TOKEN), INVALID_TOKEN, 'encrypted tokens are not accepted')
      const jwe = `${b64url({ alg: 'dir', enc: 'A256GCM', typ: 'at+jwt', kid: A.currentKid })}..aXY.${inner.split('.')[1]}.dGFn`
      await attack(apps.cold, bearer(jwe), INVALID_TOKEN, 'encrypted tokens are not accepted')
    })

    it('crit headers, known and unknown names, and b64: false (RFC 7797)', async () => {
      const payload = claimsOf(A)
      const crits: Array<Record<string, unknown>> = [
        { crit: ['b64'], b64: true },
        { crit: ['exp'], exp: now() + 60 },
        { crit: ['x-custom'], 'x-custom': 1 },
        { crit: [] },
        { crit: 'b64' },
        { crit: ['b64'], b64: false },
        { b64: false },
        { b64: true },
      ]
      for (const extra of crits) await attack(apps.cold, bearer(await signRaw(A, header(extra), payload)), INVALID_TOKEN, 'malformed token')
    })

    it('never a 5xx in this family', () => {
      expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
    })
  })

  describe('algorithms', () => {
    it('alg "none" in every spelling, with and without a signature', async () => {
      const payload = claimsOf(A)
      for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
        const unsigned = `${b64url(header({ alg }))}.${b64url(payload)}.`
        await attack(apps.cold, bearer(unsigned), INVALID_TOKEN, 'malformed token')
        await attack(apps.cold, bearer(await signRaw(A, header({ alg }), payload)), INVALID_TOKEN, 'algorithm not allowed')
        await attack(apps.cold, bearer(`${unsigned}${JUNK_SIG}`), INVALID_TOKEN, 'algorithm not allowed')
      }
    })

    it("key confusion: HS256/HS384/HS512 keyed with the issuer's public key (PEM, DER, published JWK JSON, bare JWK JSON)", async () => {
      const published = A.publicJwks().keys.find((k) => k.kid === A.currentKid)!
      const publicKey = createPublicKey({ key: published as never, format: 'jwk' })
      const { kty, crv, x, y } = published
      const secrets = [
        publicKey.export({ type: 'spki', format: 'pem' }) as string,
        publicKey.export({ type: 'spki', format: 'der' }),
        JSON.stringify(published),
        JSON.stringify({ kty, crv, x, y }),
      ]
      for (const alg of ['HS256', 'HS384', 'HS512']) {
        for (const secret of secrets) {
          const key = typeof secret === 'string' ? new TextEncoder().encode(secret) : new Uint8Array(secret)
          const token = await new SignJWT(claimsOf(A)).setProtectedHeader({ alg, typ: 'at+jwt', kid: A.currentKid }).sign(key)
          await attack(apps.cold, bearer(token), INVALID_TOKEN, 'algorithm not allowed')
        }
      }
    })

    it('an algorithm outside the allowlist: algorithms [ES256], a valid RS256 token of the issuer', async () => {
      const token = await sign(A, SVC, { alg: 'RS256' })
      await attack(apps.es256Only, bearer(token), INVALID_TOKEN, 'algorithm not allowed')
      // The same token where RS256 is allowed: genuinely valid.
      await accepted(apps.main, bearer(token))
    })

    it('sanity: the cold guards fetched nothing so far, and a legitimate token makes them fetch once', async () => {
      for (const app of [apps.cold, apps.es256Only]) {
        const before = A.requestCount()
        expectAccepted(await rec.call(app, bearer(await sign(A, SVC))), { caller: { id: 'svc-a', source: 'token' }, scopes: ['orders:read'] })
        expect(A.requestCount() - before).toBe(1)
      }
    })

    it('mismatched key type: alg RS256 / ES384 / EdDSA / PS256 under a key of another type, curve or JWK alg', async () => {
      const payload = claimsOf(A)
      const es = A.currentKid
      const rs = kidOf(A, 'RS256')
      // Signed by the RS256 key, header names the EC key; ES384 and EdDSA headers on the P-256 key; PS256 on a key published as RS256.
      await attack(apps.main, bearer(await signRaw(A, header({ alg: 'RS256', kid: es }), payload, rs)), INVALID_TOKEN, 'no key of the issuer matches the token')
      await attack(apps.main, bearer(await signRaw(A, header({ alg: 'ES384', kid: es }), payload, es)), INVALID_TOKEN, 'no key of the issuer matches the token')
      await attack(apps.main, bearer(await signRaw(A, header({ alg: 'EdDSA', kid: es }), payload, es)), INVALID_TOKEN, 'no key of the issuer matches the token')
      await attack(apps.main, bearer(await signRaw(A, header({ alg: 'PS256', kid: rs }), payload, rs)), INVALID_TOKEN, 'no key of the issuer matches the token')
      await attack(apps.main, bearer(await signRaw(A, header({ alg: 'ES256', kid: rs }), payload, es)), INVALID_TOKEN, 'no key of the issuer matches the token')
    })

    it('ECDSA junk signatures: r = s = 0, r = s = n, short, long, DER-encoded instead of R||S', async () => {
      const valid = await sign(A, SVC)
      const n = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex')
      const sig = Buffer.from(valid.split('.')[2]!, 'base64url')
      const der = (): Buffer => {
        const int = (b: Buffer): Buffer => {
          let v = b
          while (v.length > 1 && v[0] === 0) v = v.subarray(1)
          if (v[0]! & 0x80) v = Buffer.concat([Buffer.from([0]), v])
          return Buffer.concat([Buffer.from([2, v.length]), v])
        }
        const body = Buffer.concat([int(sig.subarray(0, 32)), int(sig.subarray(32))])
        return Buffer.concat([Buffer.from([0x30, body.length]), body])
      }
      const junk = [Buffer.alloc(64), Buffer.concat([n, n]), Buffer.alloc(1), sig.subarray(0, 63), Buffer.concat([sig, Buffer.from([0])]), der()]
      for (const signature of junk) await attack(apps.main, bearer(withSignature(valid, signature)), INVALID_TOKEN, 'signature verification failed')
      await accepted(apps.main, bearer(valid))
    })

    it("ECDSA malleability: the high-S twin (s' = n - s) is a valid ES256 signature and is accepted, as a separately verified token", async () => {
      // Documented behaviour: RFC 7518 §3.4 / FIPS 186 accept both S and n - S, and so does
      // node:crypto. Nothing in Callsign keys a decision on the token's bytes except (a) the
      // verified-token cache, keyed by the whole token string (the twin is verified afresh) and
      // (b) the DPoP `ath`, which a twin would fail; DPoP replay is keyed by the proof's jti,
      // so a high-S twin of a used proof is still a replay (see dpop.test.ts).
      const valid = await sign(A, SVC)
      const twin = es256HighS(valid)
      expect(twin).not.toBe(valid)
      await accepted(apps.main, bearer(valid))
      await accepted(apps.main, bearer(twin))
    })

    it('EdDSA: a signature with S >= L (S + L) is refused; the canonical one is accepted', async () => {
      const valid = await sign(ED, SVC)
      await attack(apps.main, bearer(ed25519SPlusL(valid)), INVALID_TOKEN, 'signature verification failed')
      await attack(apps.main, bearer(withSignature(valid, Buffer.alloc(64))), INVALID_TOKEN, 'signature verification failed')
      await accepted(apps.main, bearer(valid))
    })

    it('never a 5xx in this family', () => {
      expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
    })
  })

  describe('keys', () => {
    it("jku and x5u pointing at the attacker's key set: never fetched, refused", async () => {
      const attackerKid = X.currentKid
      for (const extra of [{ jku: X.jwksUri }, { x5u: X.jwksUri }, { jku: X.jwksUri, x5u: `${X.origin}/cert.pem` }]) {
        const token = await X.signAccessToken(SVC, { issuer: A.issuer, audience: AUDIENCE, header: extra })
        await attack(apps.main, bearer(token), INVALID_TOKEN, 'no key of the issuer matches the token')
        // Same, without kid: the issuer's own (single ES256) key is used, and the signature fails.
        const noKid = await signRaw(X, { alg: 'ES256', typ: 'at+jwt', ...extra }, claimsOf(A), attackerKid)
        await attack(apps.main, bearer(noKid), INVALID_TOKEN, 'signature verification failed')
      }
      expect(X.requestCount()).toBe(0)
    })

    it('jwk header: an embedded attacker key that signed the token (with and without kid)', async () => {
      const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
      const jwk = await exportJWK(publicKey)
      for (const extra of [{}, { kid: A.currentKid }, { kid: 'attacker-key' }]) {
        const token = await new SignJWT(claimsOf(A)).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', jwk, ...extra }).sign(privateKey)
        await attack(apps.main, bearer(token), INVALID_TOKEN, /signature verification failed|no key of the issuer matches the token/)
      }
    })

    it('x5c header: an attacker certificate chain (untrusted CA) whose key signed the token', async () => {
      const cert = await fx.untrustedCa.issueCertificate({ spiffeId: ID.frontend })
      const der = (pem: string): string => Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64').toString('base64')
      const x5c = [der(cert.certPem), der(fx.untrustedCa.certPem)]
      const key = await importPKCS8(cert.keyPem, 'ES256')
      for (const extra of [{}, { kid: A.currentKid }]) {
        const token = await new SignJWT(claimsOf(A)).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', x5c, ...extra }).sign(key)
        await attack(apps.main, bearer(token), INVALID_TOKEN, 'signature verification failed')
      }
    })

    it('kid tricks: path traversal, SQL-ish, NUL, over 256 characters, empty, non-string', async () => {
      const payload = claimsOf(A)
      for (const kid of ['../../etc/passwd', '..\\..\\windows\\win.ini', "' OR 1=1 --", `${A.currentKid}\u0000`, `${A.currentKid} `, 'k'.repeat(256)]) {
        await attack(apps.main, bearer(await signRaw(A, header({ kid }), payload)), INVALID_TOKEN, 'no key of the issuer matches the token')
      }
      for (const kid of ['k'.repeat(257), '', 42, null, true, ['k'], { kid: A.currentKid }]) {
        await attack(apps.main, bearer(await signRaw(A, header({ kid }), payload)), INVALID_TOKEN, 'malformed key id')
      }
    })

    it("kid of another configured issuer's key (two issuers in one guard): refused both ways", async () => {
      const fromB = await B.signAccessToken(SVC, { issuer: A.issuer, audience: AUDIENCE })
      await attack(apps.main, bearer(fromB), INVALID_TOKEN, 'no key of the issuer matches the token')
      const fromA = await A.signAccessToken(SVC, { issuer: B.issuer, audience: AUDIENCE })
      await attack(apps.main, bearer(fromA), INVALID_TOKEN, 'no key of the issuer matches the token')
      await accepted(apps.main, bearer(await sign(B, SVC)), { issuer: B.issuer })
    })

    it('1000 requests with random unknown kids: at most one JWKS refetch per cooldown (30 s)', async () => {
      // 50 over HTTPS (keep-alive) and 950 handed straight to the same app's guard, half before and
      // half after the cooldown: the guard's key state is what is attacked, the transport is not.
      const floodClock = createClock()
      floodClock.freeze()
      const app = await fx.start(adapter, { issuers: issuerOption(A, { explicitJwks: true }), now: floodClock.now, logger: quiet })
      const agent = keepAliveAgent(8)
      try {
        const jwks = (): number => A.requestCount('/jwks.json')
        let before = jwks()
        expectAccepted(await rec.call(app, { ...bearer(await sign(A, SVC)), agent }), { caller: { id: 'svc-a', source: 'token' }, scopes: ['orders:read'] })
        expect(jwks() - before, 'first legitimate request: the initial fetch').toBe(1)
        const payload = b64url(claimsOf(A))
        const forged = (): string => `${b64url(header({ kid: randomUUID() }))}.${payload}.${JUNK_SIG}`
        const flood = async (): Promise<void> => {
          const overHttp = await pool(25, 8, async () => {
            const res = await rec.call(app, { ...bearer(forged()), agent })
            return `${res.status} ${res.body?.code}`
          })
          const direct = await pool(475, 16, async () =>
            app.guard.authenticate({ method: 'GET', url: '/whoami', headers: { authorization: `Bearer ${forged()}` } }).then(
              () => 'accepted',
              (error: { status?: number; code?: string }) => `${error.status} ${error.code}`,
            ),
          )
          expect(new Set([...overHttp, ...direct])).toEqual(new Set(['401 invalid_token']))
        }
        before = jwks()
        await flood()
        expect(jwks() - before, 'within the cooldown of the initial fetch: no refetch').toBe(0)
        floodClock.advance(30)
        await flood()
        expect(jwks() - before, 'next cooldown period: exactly one refetch').toBe(1)
        expectAccepted(await rec.call(app, { ...bearer(await sign(A, SVC)), agent }), { caller: { id: 'svc-a', source: 'token' }, scopes: ['orders:read'] })
        expect(jwks() - before).toBe(1)
      } finally {
        agent.destroy()
        await app.close()
      }
    })

    it('never a 5xx in this family', () => {
      expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
    })
  })

  describe('claims', () => {
    /** A token of A with `claims` over the service claims, signed with the issuer's key (claims may be invalid). */
    const token = (claims: Record<string, unknown>, options: Parameters<typeof sign>[2] = {}): Promise<string> => sign(A, { ...SVC, ...claims }, options)

    it('aud: missing, wrong, list of wrong ones, empty list, number, object, null; a list containing it is accepted', async () => {
      await attack(apps.main, bearer(await token({}, { omit: ['aud'] })), INVALID_TOKEN, 'token audience does not match')
      for (const aud of [
        'https://billing.example.org',
        `${AUDIENCE}/`,
        AUDIENCE.toUpperCase(),
        ['https://a.example', 'https://b.example'],
        [],
        42,
        { aud: AUDIENCE },
        [[AUDIENCE]],
        null,
      ]) {
        await attack(apps.main, bearer(await token({ aud })), INVALID_TOKEN, 'token audience does not match')
      }
      await accepted(apps.main, bearer(await token({ aud: ['https://billing.example.org', AUDIENCE, 'https://x.example'] })))
    })

    it('iss look-alikes: trailing slash, scheme and path case, https for http, homoglyphs, whitespace, array, object', async () => {
      const a = A.issuer // http://127.0.0.1:<port>
      const b = B.issuer // http://127.0.0.1:<port>/tenant-b
      const lookAlikes: unknown[] = [
        `${a}/`,
        a.replace('http:', 'HTTP:'),
        a.replace('http:', 'https:'),
        `${a} `,
        ` ${a}`,
        `${a}#`,
        `${a}?`,
        `${a}\u0000`,
        a.replace(/\./g, '\u3002'),
        a.replace('127', '\uff11\uff12\uff17'),
        a.replace('http://', 'http://localhost@'),
        b.replace('tenant-b', 'TENANT-B'),
        b.replace('tenant-b', 'tenant\u2010b'),
        b.replace('tenant', 't\u0435nant'),
        `${b}/`,
        b.slice(0, -1),
        [a],
        { iss: a },
        null,
        1,
      ]
      for (const iss of lookAlikes) await attack(apps.main, bearer(await token({ iss })), INVALID_TOKEN, 'untrusted issuer')
    })

    it('exp at the clock-tolerance boundary (frozen clock): exp = now - 30 refused, now - 29 accepted', async () => {
      const t = clock.freeze()
      try {
        await attack(apps.main, bearer(await token({ iat: t - 100, exp: t - 30 })), INVALID_TOKEN, 'token expired')
        await accepted(apps.main, bearer(await token({ iat: t - 100, exp: t - 29 })))
        await attack(apps.main, bearer(await token({ iat: t - 100, exp: t - 31 })), INVALID_TOKEN, 'token expired')
      } finally {
        clock.release()
      }
    })

    it('a token verified (and cached) just before the boundary is refused from the boundary on, like a fresh one', async () => {
      const t = clock.freeze()
      try {
        const cached = await token({ iat: t - 100, exp: t - 29 })
        await accepted(apps.main, bearer(cached))
        await accepted(apps.main, bearer(cached)) // a second use puts it in the verified-token cache
        clock.advance(1) // now = exp + 30: a fresh verification refuses it (exp <= now - tolerance)
        await attack(apps.main, bearer(cached), INVALID_TOKEN, 'token expired')
      } finally {
        clock.release()
      }
    })

    it('exp/nbf/iat edge cases: string, 1e309 (Infinity), negative, null, missing; nbf and iat beyond the tolerance', async () => {
      const t = clock.freeze()
      try {
        for (const exp of ['9999999999', -1, 0, null, true, [t + 300]]) {
          await attack(apps.main, bearer(await token({ exp })), INVALID_TOKEN, /token has no valid expiry|token expired/)
        }
        await attack(apps.main, bearer(await token({}, { omit: ['exp'] })), INVALID_TOKEN, 'token has no valid expiry')
        const raw = (claims: string): Promise<string> =>
          signRaw(A, header(), `{"iss":${JSON.stringify(A.issuer)},"aud":"${AUDIENCE}","sub":"svc-a","client_id":"svc-a",${claims}}`)
        await attack(apps.main, bearer(await raw('"exp":1e309')), INVALID_TOKEN, 'token has no valid expiry')
        await attack(apps.main, bearer(await raw('"exp":-1e309')), INVALID_TOKEN, 'token has no valid expiry')
        await attack(apps.main, bearer(await raw(`"exp":${t + 300},"nbf":1e309`)), INVALID_TOKEN, 'malformed nbf claim')
        await attack(apps.main, bearer(await raw(`"exp":${t + 300},"iat":1e309`)), INVALID_TOKEN, 'malformed iat claim')
        await attack(apps.main, bearer(await token({ nbf: t + 31 })), INVALID_TOKEN, 'token not yet valid')
        await attack(apps.main, bearer(await token({ nbf: String(t) })), INVALID_TOKEN, 'malformed nbf claim')
        await attack(apps.main, bearer(await token({ iat: t + 31, exp: t + 300 })), INVALID_TOKEN, 'token issued in the future')
        await attack(apps.main, bearer(await token({ iat: String(t) })), INVALID_TOKEN, 'malformed iat claim')
        await accepted(apps.main, bearer(await token({ nbf: t + 30, iat: t + 30, exp: t + 300 })))
      } finally {
        clock.release()
      }
    })

    it('wrong claim types: sub number, client_id array, azp object, jti number, scope array (scopeClaim "scope"), cnf and act not objects', async () => {
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ sub: 123 }, 'malformed sub claim'],
        [{ sub: '' }, 'malformed sub claim'],
        [{ client_id: ['svc-a'] }, 'malformed client_id claim'],
        [{ azp: { id: 'svc-a' } }, 'malformed azp claim'],
        [{ jti: 1 }, 'malformed jti claim'],
        [{ scope: ['orders:read'] }, 'malformed scope claim'],
        [{ scope: 1 }, 'malformed scope claim'],
        [{ scope: 'orders:read "x"' }, 'malformed scope claim'],
        [{ scope: 'a\\b' }, 'malformed scope claim'],
        [{ cnf: 'x5t' }, 'malformed cnf claim'],
        [{ cnf: [] }, 'malformed cnf claim'],
        [{ cnf: { jkt: 5 } }, 'malformed cnf claim'],
        [{ act: 'svc-b' }, 'malformed act claim'],
        [{ act: { sub: 1 } }, 'malformed act claim'],
        [{ act: [] }, 'malformed act claim'],
      ]
      for (const [claims, detail] of cases) await attack(apps.main, bearer(await token(claims)), INVALID_TOKEN, detail)
    })

    it('cnf with a confirmation method Callsign does not enforce (jwk, kid, jku, jwe, x5t, unknown), alone or beside an enforced one: 401 as Bearer and over the bound certificate', async () => {
      const attackerKey = { kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' }
      const unenforced: Array<Record<string, unknown>> = [
        { jwk: attackerKey },
        { kid: 'dpop-1' },
        { jku: 'https://attacker.example/jwks' },
        { jwe: 'a.b.c.d.e' },
        { x5t: 'abc' },
        { 'x5t#S512': 'abc' },
        { jkt: 'abc', kid: 'dpop-1' },
      ]
      for (const cnf of unenforced)
        await attack(apps.main, bearer(await token({ cnf })), INVALID_TOKEN, 'token is bound by a confirmation method that is not supported')
      // Beside the thumbprint of the very certificate presented: the thumbprint alone does not make it acceptable.
      const bound = fx.certs.frontend.x5tS256
      for (const extra of [{ jwk: attackerKey }, { kid: 'k' }, { 'x5t#S384': 'abc' }]) {
        await attack(
          apps.main,
          { ...bearer(await token({ cnf: { 'x5t#S256': bound, ...extra } })), cert: fx.certs.frontend },
          INVALID_TOKEN,
          'token is bound by a confirmation method that is not supported',
        )
      }
      // An empty cnf binds to nothing a presenter could prove: malformed, never a bearer token.
      await attack(apps.main, bearer(await token({ cnf: {} })), INVALID_TOKEN, 'malformed cnf claim')
      // The enforced method alone, over its certificate, is served.
      const res = await rec.call(apps.main, { ...bearer(await token({ cnf: { 'x5t#S256': bound } })), cert: fx.certs.frontend })
      expectAccepted(res, { caller: { id: ID.frontend, source: 'mtls' }, scopes: ['orders:read'], binding: 'mtls', peer: fx.certs.frontend })
    })

    it('huge scope claims: 257+ scopes refused; 10 000 scopes: 431/400 at the HTTP layer, and refused fast by the guard itself', async () => {
      await attack(apps.main, bearer(await token({ scope: Array.from({ length: 300 }, (_, i) => `s${i}`).join(' ') })), INVALID_TOKEN, 'too many scopes')
      const huge = await token({ scope: Array.from({ length: 10_000 }, (_, i) => `s${i}`).join(' ') })
      const res = await rec.call(apps.main, bearer(huge))
      expect([400, 431], res.text.slice(0, 200)).toContain(res.status)
      // The same guard on a synthetic request (no HTTP header limit): refused by size before it is parsed, and
      // 4 000 one-letter scopes (under 12 KiB) refused by count; both fast.
      const started = performance.now()
      const direct = (t: string): Promise<unknown> =>
        apps.main.guard.authenticate({ method: 'GET', url: '/whoami', headers: { authorization: `Bearer ${t}` } }).then(
          () => undefined,
          (e: unknown) => e,
        )
      expect(await direct(huge)).toMatchObject({ code: 'invalid_request', message: 'Bearer token too large' })
      const many = await token({ scope: Array.from({ length: 4_000 }, () => 'a').join(' ') })
      expect(many.length).toBeLessThanOrEqual(12 * 1024)
      expect(await direct(many)).toMatchObject({ code: 'invalid_token', message: 'too many scopes' })
      expect(performance.now() - started).toBeLessThan(2000)
    })

    it('act chains: 50 levels deep refused; cyclic-looking a -> b -> a within maxDepth kept as is; a 5-hop cycle refused', async () => {
      const chain = (subs: string[]): Record<string, unknown> =>
        subs.reduceRight<Record<string, unknown> | undefined>((act, sub) => ({ sub, ...(act ? { act } : {}) }), undefined)!
      const deep = chain(Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? ID.frontend : ID.worker)))
      await attack(apps.main, bearer(await token({ sub: 'alice', client_id: undefined, act: deep })), INVALID_TOKEN, 'delegation chain too deep')
      const res = await rec.call(apps.main, bearer(await token({ sub: 'alice', client_id: undefined, act: chain([ID.frontend, ID.worker, ID.frontend]) })))
      expectAccepted(res, {
        caller: { id: ID.frontend, source: 'token' },
        user: 'alice',
        scopes: ['orders:read'],
        actors: [ID.frontend, ID.worker, ID.frontend],
      })
      await attack(
        apps.main,
        bearer(await token({ sub: 'alice', client_id: undefined, act: chain([ID.frontend, ID.worker, ID.frontend, ID.worker, ID.frontend]) })),
        INVALID_TOKEN,
        'delegation chain too deep',
      )
    })

    it('client_id (or act.sub) naming another workload, presented over mTLS: 401 (caller consistency)', async () => {
      const worker = { sub: ID.worker, client_id: ID.worker }
      await attack(apps.main, { ...bearer(await token(worker)), cert: fx.certs.frontend }, INVALID_TOKEN, 'token was issued to another service')
      await attack(
        apps.main,
        { ...bearer(await token({ sub: 'alice', client_id: undefined, act: { sub: ID.worker } })), cert: fx.certs.frontend },
        INVALID_TOKEN,
        'token was issued to another service',
      )
      // Nearest actor decides, not an earlier one naming the presenter.
      await attack(
        apps.main,
        { ...bearer(await token({ sub: 'alice', client_id: undefined, act: { sub: ID.worker, act: { sub: ID.frontend } } })), cert: fx.certs.frontend },
        INVALID_TOKEN,
        'token was issued to another service',
      )
      // The legitimate holder is served.
      const res = await rec.call(apps.main, { ...bearer(await token(worker)), cert: fx.certs.worker })
      expectAccepted(res, { caller: { id: ID.worker, source: 'mtls' }, scopes: ['orders:read'], peer: fx.certs.worker })
    })

    it('a sub that looks like a SPIFFE ID is still the user when act is present (never the caller)', async () => {
      const res = await rec.call(apps.main, {
        ...bearer(await token({ sub: ID.worker, client_id: undefined, act: { sub: ID.frontend } })),
        cert: fx.certs.frontend,
      })
      expectAccepted(res, {
        caller: { id: ID.frontend, source: 'mtls' },
        user: ID.worker,
        scopes: ['orders:read'],
        actors: [ID.frontend],
        peer: fx.certs.frontend,
      })
      const noCert = await rec.call(apps.main, bearer(await token({ sub: ID.worker, client_id: 'web-app' })))
      expectAccepted(noCert, { caller: { id: 'web-app', source: 'token' }, user: ID.worker, scopes: ['orders:read'] })
    })

    it('a token naming another workload only by azp or sub (no client_id, no act), presented over mTLS: 401 (caller consistency)', async () => {
      // Without a certificate this token's caller would be ID.worker (act.sub ?? client_id ?? azp ?? sub), so the
      // frontend must not be able to present it as its own.
      await attack(
        apps.main,
        { ...bearer(await token({ sub: ID.worker, client_id: undefined })), cert: fx.certs.frontend },
        INVALID_TOKEN,
        'token was issued to another service',
      )
      await attack(
        apps.main,
        { ...bearer(await token({ sub: 'svc-x', azp: ID.worker, client_id: undefined })), cert: fx.certs.frontend },
        INVALID_TOKEN,
        'token was issued to another service',
      )
      // The worker itself is served.
      const res = await rec.call(apps.main, { ...bearer(await token({ sub: ID.worker, client_id: undefined })), cert: fx.certs.worker })
      expectAccepted(res, { caller: { id: ID.worker, source: 'mtls' }, scopes: ['orders:read'], peer: fx.certs.worker })
    })

    it('never a 5xx in this family', () => {
      expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
    })
  })
})
