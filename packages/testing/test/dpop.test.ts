import { constants, createHash, createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto'
import { EmbeddedJWK, calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, errors, importJWK, jwtVerify, type JWK } from 'jose'
import { afterEach, describe, expect, it } from 'vitest'
import { actorChain, createDpopKey, createDpopProof, createTestCa, startTestIssuer, type DpopKey, type TestIssuer } from '../src/index.js'

const ALGORITHMS: DpopKey['alg'][] = ['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256']
const URL_ = 'https://api.example/orders/42'
const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln'

// One key per algorithm, shared: RSA key generation is slow.
const keys = new Map<DpopKey['alg'], DpopKey>()
async function key(alg: DpopKey['alg'] = 'ES256'): Promise<DpopKey> {
  let k = keys.get(alg)
  if (!k) {
    k = await createDpopKey(alg)
    keys.set(alg, k)
  }
  return k
}

interface Parts {
  header: Record<string, unknown>
  payload: Record<string, unknown>
  signingInput: string
  signature: Buffer
  segments: string[]
}

/** Splits a compact JWS without jose, checking base64url form on the way. */
function parts(jws: string): Parts {
  const segments = jws.split('.')
  expect(segments).toHaveLength(3)
  for (const s of segments) expect(s).toMatch(/^[A-Za-z0-9_-]*$/)
  const [h = '', p = '', s = ''] = segments
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>,
    signingInput: `${h}.${p}`,
    signature: Buffer.from(s, 'base64url'),
    segments,
  }
}

/** Verifies a JWS signature with node:crypto only (independent of jose). */
function nodeVerifies(alg: DpopKey['alg'], jwk: JWK, signingInput: string, signature: Buffer): boolean {
  const publicKey: KeyObject = createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' })
  const data = Buffer.from(signingInput, 'ascii')
  switch (alg) {
    case 'ES256':
      return nodeVerify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)
    case 'ES384':
      return nodeVerify('sha384', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)
    case 'EdDSA':
      return nodeVerify(null, data, publicKey, signature)
    case 'PS256':
      return nodeVerify('sha256', data, { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature)
    case 'RS256':
      return nodeVerify('sha256', data, publicKey, signature)
  }
}

/** RFC 7638 thumbprint computed without jose. */
function rfc7638(jwk: JWK): string {
  const required: Record<string, string[]> = { EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'], RSA: ['e', 'kty', 'n'] }
  const members = required[jwk.kty ?? ''] ?? []
  const canonical = `{${members.map((m) => `${JSON.stringify(m)}:${JSON.stringify((jwk as Record<string, unknown>)[m])}`).join(',')}}`
  return createHash('sha256').update(canonical).digest('base64url')
}

const sha256b64u = (s: string): string => createHash('sha256').update(s).digest('base64url')
const nowSeconds = (): number => Math.floor(Date.now() / 1000)
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

describe('createDpopKey', () => {
  it.each(ALGORITHMS)('%s: extractable pair, bare public JWK, RFC 7638 jkt', async (alg) => {
    const k = await key(alg)
    expect(k.alg).toBe(alg)
    expect(k.privateKey.type).toBe('private')
    expect(k.publicKey.type).toBe('public')
    expect(k.privateKey.extractable).toBe(true)
    for (const m of [...PRIVATE_MEMBERS, 'kid', 'alg', 'use']) expect(k.publicJwk).not.toHaveProperty(m)
    expect(k.jkt).toBe(await calculateJwkThumbprint(k.publicJwk, 'sha256'))
    expect(k.jkt).toBe(rfc7638(k.publicJwk))
    expect(k.jkt).toMatch(/^[A-Za-z0-9_-]{43}$/)
  })

  it('defaults to ES256 (P-256) and rejects unknown algorithms', async () => {
    const k = await createDpopKey()
    expect(k.alg).toBe('ES256')
    expect(k.publicJwk).toMatchObject({ kty: 'EC', crv: 'P-256' })
    expect((await key('EdDSA')).publicJwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519' })
    await expect(createDpopKey('HS256' as DpopKey['alg'])).rejects.toThrow(TypeError)
  })
})

describe('createDpopProof: valid proofs', () => {
  it.each(ALGORITHMS)('%s: verifies with jose EmbeddedJWK and with node:crypto', async (alg) => {
    const k = await key(alg)
    const before = nowSeconds()
    const proof = await createDpopProof(k, { method: 'POST', url: URL_, accessToken: TOKEN })
    const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt' })
    expect(protectedHeader).toEqual({ typ: 'dpop+jwt', alg, jwk: k.publicJwk })
    expect(payload.htm).toBe('POST')
    expect(payload.htu).toBe(URL_)
    expect(payload.ath).toBe(sha256b64u(TOKEN))
    expect(payload.iat).toBeGreaterThanOrEqual(before)
    expect(payload.iat).toBeLessThanOrEqual(nowSeconds())
    expect(payload.jti).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    const p = parts(proof)
    expect(nodeVerifies(alg, k.publicJwk, p.signingInput, p.signature)).toBe(true)
    expect(await calculateJwkThumbprint(protectedHeader.jwk as JWK, 'sha256')).toBe(k.jkt)
  })

  it('matches RFC 9449 §4.2 field by field (checked without jose)', async () => {
    const k = await key('ES256')
    const proof = await createDpopProof(k, {
      method: 'GET',
      url: 'https://api.example/orders?page=2&x=%20#frag',
      accessToken: TOKEN,
      nonce: 'n-0_1',
    })
    const { header, payload, signature } = parts(proof)
    // Header: exactly typ, alg, jwk.
    expect(Object.keys(header).sort()).toEqual(['alg', 'jwk', 'typ'])
    expect(header['typ']).toBe('dpop+jwt') // explicit typing
    expect(typeof header['alg']).toBe('string')
    expect(header['alg']).not.toBe('none') // asymmetric, not none, not MAC
    expect(String(header['alg'])).not.toMatch(/^HS/)
    const jwk = header['jwk'] as Record<string, unknown>
    expect(typeof jwk).toBe('object')
    for (const m of PRIVATE_MEMBERS) expect(jwk).not.toHaveProperty(m) // MUST NOT contain a private key
    expect(jwk).toEqual(k.publicJwk)
    // Payload: exactly jti, htm, htu, iat, ath, nonce.
    expect(Object.keys(payload).sort()).toEqual(['ath', 'htm', 'htu', 'iat', 'jti', 'nonce'])
    expect(typeof payload['jti']).toBe('string')
    expect((payload['jti'] as string).length).toBeGreaterThanOrEqual(16) // >= 96 bits of randomness
    expect(payload['htm']).toBe('GET')
    expect(payload['htu']).toBe('https://api.example/orders') // without query and fragment
    expect(Number.isInteger(payload['iat'])).toBe(true)
    expect(Math.abs((payload['iat'] as number) - nowSeconds())).toBeLessThanOrEqual(2)
    expect(payload['ath']).toBe(sha256b64u(TOKEN))
    expect(payload['ath']).not.toMatch(/=/) // base64url without padding
    expect(payload['nonce']).toBe('n-0_1')
    expect(signature.length).toBe(64) // ES256: raw r || s
  })

  it('has no ath or nonce unless asked, a fresh jti per proof, and strips only query and fragment', async () => {
    const k = await key()
    const a = decodeJwt(await createDpopProof(k, { method: 'GET', url: 'https://API.example:8443/a/b#f' }))
    const b = decodeJwt(await createDpopProof(k, { method: 'GET', url: 'https://api.example/a?q#f' }))
    expect(Object.keys(a).sort()).toEqual(['htm', 'htu', 'iat', 'jti'])
    expect(a.htu).toBe('https://API.example:8443/a/b') // otherwise verbatim
    expect(b.htu).toBe('https://api.example/a')
    expect(a.jti).not.toBe(b.jti)
    const c = decodeJwt(await createDpopProof(k, { method: 'GET', url: 'http://127.0.0.1:3000/' }))
    expect(c.htu).toBe('http://127.0.0.1:3000/')
  })
})

describe('createDpopProof: each switch produces exactly its defect', () => {
  const base = { method: 'GET', url: URL_, accessToken: TOKEN } as const

  async function baseline(): Promise<{ header: Record<string, unknown>; payload: Record<string, unknown> }> {
    const p = parts(await createDpopProof(await key(), { ...base, jti: 'fixed', iat: 1_700_000_000 }))
    return { header: p.header, payload: p.payload }
  }

  it('typ: other value, or null omits it', async () => {
    const k = await key()
    const { header, payload } = await baseline()
    const other = parts(await createDpopProof(k, { ...base, jti: 'fixed', iat: 1_700_000_000, typ: 'JWT' }))
    expect(other.header).toEqual({ ...header, typ: 'JWT' })
    expect(other.payload).toEqual(payload)
    const none = parts(await createDpopProof(k, { ...base, typ: null }))
    expect(none.header).not.toHaveProperty('typ')
    expect(nodeVerifies('ES256', k.publicJwk, none.signingInput, none.signature)).toBe(true)
    await expect(jwtVerify(await createDpopProof(k, { ...base, typ: 'JWT' }), EmbeddedJWK, { typ: 'dpop+jwt' })).rejects.toThrow(
      errors.JWTClaimValidationFailed,
    )
  })

  it('alg: header names another algorithm, signature still made by the key with its own', async () => {
    const k = await key()
    for (const alg of ['HS256', 'ES384', 'RS256']) {
      const proof = await createDpopProof(k, { ...base, alg })
      const p = parts(proof)
      expect(p.header).toEqual({ typ: 'dpop+jwt', alg, jwk: k.publicJwk })
      expect(nodeVerifies('ES256', k.publicJwk, p.signingInput, p.signature)).toBe(true)
      await expect(jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt' })).rejects.toThrow()
    }
    const same = await createDpopProof(k, { ...base, alg: 'ES256' })
    await expect(jwtVerify(same, EmbeddedJWK)).resolves.toBeDefined()
  })

  it('htm, htu, ath, iat, jti overrides; null omits ath and jti', async () => {
    const k = await key()
    const { header, payload } = await baseline()
    const fixed = { ...base, jti: 'fixed', iat: 1_700_000_000 }
    const cases: Array<[Partial<Parameters<typeof createDpopProof>[1]>, Record<string, unknown>]> = [
      [{ htm: 'POST' }, { ...payload, htm: 'POST' }],
      [{ htu: 'https://other.example/x?y' }, { ...payload, htu: 'https://other.example/x?y' }],
      [{ ath: sha256b64u('other') }, { ...payload, ath: sha256b64u('other') }],
      [{ iat: 1_600_000_000 }, { ...payload, iat: 1_600_000_000 }],
      [{ jti: 'replayed' }, { ...payload, jti: 'replayed' }],
    ]
    for (const [override, expected] of cases) {
      const p = parts(await createDpopProof(k, { ...fixed, ...override }))
      expect(p.header).toEqual(header)
      expect(p.payload).toEqual(expected)
      expect(nodeVerifies('ES256', k.publicJwk, p.signingInput, p.signature)).toBe(true)
    }
    const { ath: _ath, ...withoutAth } = payload
    expect(parts(await createDpopProof(k, { ...fixed, ath: null })).payload).toEqual(withoutAth)
    const { jti: _jti, ...withoutJti } = payload
    expect(parts(await createDpopProof(k, { ...fixed, jti: null })).payload).toEqual(withoutJti)
    // An ath override without an access token still adds ath.
    expect(decodeJwt(await createDpopProof(k, { method: 'GET', url: URL_, ath: 'x' })).ath).toBe('x')
  })

  it('omitJwk and jwk: no key, or another key, in the header', async () => {
    const k = await key()
    const other = await createDpopKey()
    const { header } = await baseline()
    const omitted = await createDpopProof(k, { ...base, omitJwk: true })
    expect(parts(omitted).header).toEqual({ typ: 'dpop+jwt', alg: 'ES256' })
    await expect(jwtVerify(omitted, EmbeddedJWK)).rejects.toThrow(errors.JWSInvalid)

    const swapped = await createDpopProof(k, { ...base, jwk: other.publicJwk })
    const p = parts(swapped)
    expect(p.header).toEqual({ ...header, jwk: other.publicJwk })
    expect(nodeVerifies('ES256', k.publicJwk, p.signingInput, p.signature)).toBe(true)
    await expect(jwtVerify(swapped, EmbeddedJWK)).rejects.toThrow(errors.JWSSignatureVerificationFailed)
  })

  it('includePrivateKey puts the private JWK (with d) in the header; jose refuses it', async () => {
    for (const alg of ALGORITHMS) {
      const k = await key(alg)
      const proof = await createDpopProof(k, { ...base, includePrivateKey: true })
      const p = parts(proof)
      const jwk = p.header['jwk'] as Record<string, unknown>
      expect(jwk).toHaveProperty('d')
      expect(jwk).toMatchObject(k.publicJwk as Record<string, unknown>)
      expect(p.header['alg']).toBe(alg)
      expect(nodeVerifies(alg, k.publicJwk, p.signingInput, p.signature)).toBe(true)
      await expect(jwtVerify(proof, EmbeddedJWK)).rejects.toThrow(/must be a public key/)
    }
  })

  it('signWith signs with another key than the embedded one', async () => {
    const k = await key()
    const other = await createDpopKey()
    const proof = await createDpopProof(k, { ...base, signWith: other })
    const p = parts(proof)
    expect(p.header['jwk']).toEqual(k.publicJwk)
    expect(nodeVerifies('ES256', other.publicJwk, p.signingInput, p.signature)).toBe(true)
    expect(nodeVerifies('ES256', k.publicJwk, p.signingInput, p.signature)).toBe(false)
    await expect(jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt' })).rejects.toThrow(errors.JWSSignatureVerificationFailed)
    // With a key of another algorithm, alg follows the signing key.
    const rsa = await key('RS256')
    const mixed = parts(await createDpopProof(k, { ...base, signWith: rsa }))
    expect(mixed.header['alg']).toBe('RS256')
    expect(nodeVerifies('RS256', rsa.publicJwk, mixed.signingInput, mixed.signature)).toBe(true)
  })

  it('unsigned: alg none and an empty signature', async () => {
    const k = await key()
    const { payload } = await baseline()
    const proof = await createDpopProof(k, { ...base, jti: 'fixed', iat: 1_700_000_000, unsigned: true })
    expect(proof.endsWith('.')).toBe(true)
    const p = parts(proof)
    expect(p.segments[2]).toBe('')
    expect(p.header).toEqual({ typ: 'dpop+jwt', alg: 'none', jwk: k.publicJwk })
    expect(p.payload).toEqual(payload)
    await expect(jwtVerify(proof, EmbeddedJWK)).rejects.toThrow()
    // With an alg: a header that claims ES256 but no signature.
    const empty = parts(await createDpopProof(k, { ...base, unsigned: true, alg: 'ES256' }))
    expect(empty.header['alg']).toBe('ES256')
    expect(empty.segments[2]).toBe('')
  })

  it('tamper: payload changed after signing, header and signature kept', async () => {
    for (const alg of ALGORITHMS) {
      const k = await key(alg)
      const proof = await createDpopProof(k, { ...base, tamper: true })
      const p = parts(proof)
      expect(p.header).toEqual({ typ: 'dpop+jwt', alg, jwk: k.publicJwk })
      expect(p.payload).toMatchObject({ htm: 'GET', htu: URL_, ath: sha256b64u(TOKEN) })
      expect(nodeVerifies(alg, k.publicJwk, p.signingInput, p.signature)).toBe(false)
      await expect(jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt' })).rejects.toThrow(errors.JWSSignatureVerificationFailed)
    }
    const k = await key()
    const jti = decodeJwt(await createDpopProof(k, { ...base, jti: 'abc0', tamper: true })).jti
    expect(jti).toBe('abc1')
    const noJti = parts(await createDpopProof(k, { ...base, jti: null, tamper: true }))
    expect(noJti.payload).not.toHaveProperty('jti')
    await expect(jwtVerify(noJti.segments.join('.'), EmbeddedJWK)).rejects.toThrow(errors.JWSSignatureVerificationFailed)
  })

  it('extraHeader and extraClaims are merged last', async () => {
    const k = await key()
    const proof = await createDpopProof(k, {
      ...base,
      extraHeader: { kid: 'k1' },
      extraClaims: { htm: 'DELETE', custom: 1 },
    })
    const p = parts(proof)
    expect(p.header).toEqual({ typ: 'dpop+jwt', alg: 'ES256', jwk: k.publicJwk, kid: 'k1' })
    expect(p.payload).toMatchObject({ htm: 'DELETE', custom: 1 })
    await expect(jwtVerify(proof, EmbeddedJWK)).resolves.toBeDefined()
    const crit = await createDpopProof(k, { ...base, extraHeader: { crit: ['urn:x'], 'urn:x': 1 } })
    expect(decodeProtectedHeader(crit)).toMatchObject({ crit: ['urn:x'], 'urn:x': 1 })
  })
})

describe('issuer: DPoP- and certificate-bound tokens', () => {
  const opened: TestIssuer[] = []
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((issuer) => issuer.close()))
  })

  it('dpopJkt adds cnf.jkt, x5tS256 adds cnf["x5t#S256"], both combine', async () => {
    const issuer = await startTestIssuer()
    opened.push(issuer)
    const k = await key()
    const svid = await (await createTestCa()).issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' })

    const dpop = await issuer.signAccessToken({ sub: 'alice' }, { dpopJkt: k.jkt, audience: 'api' })
    const verified = await jwtVerify(dpop, issuer.publicKey(), { issuer: issuer.issuer, audience: 'api', typ: 'at+jwt' })
    expect(verified.payload.cnf).toEqual({ jkt: k.jkt })

    const mtls = await issuer.signAccessToken({}, { x5tS256: svid.x5tS256 })
    expect(decodeJwt(mtls).cnf).toEqual({ 'x5t#S256': svid.x5tS256 })

    const both = await issuer.signAccessToken({}, { dpopJkt: k.jkt, x5tS256: svid.x5tS256 })
    expect(decodeJwt(both).cnf).toEqual({ jkt: k.jkt, 'x5t#S256': svid.x5tS256 })

    expect(decodeJwt(await issuer.signAccessToken({ sub: 'x' })).cnf).toBeUndefined()
    expect(decodeJwt(await issuer.signAccessToken({ cnf: { jkt: 'other' } }, { dpopJkt: k.jkt })).cnf).toEqual({
      jkt: 'other',
    })
    expect(decodeJwt(await issuer.signAccessToken({}, { dpopJkt: k.jkt, omit: ['cnf'] }))).not.toHaveProperty('cnf')

    // The end-to-end pairing a resource server checks.
    const proof = await createDpopProof(k, { method: 'GET', url: URL_, accessToken: dpop })
    const checked = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt' })
    const { jkt } = verified.payload.cnf as { jkt: string }
    expect(await calculateJwkThumbprint(checked.protectedHeader.jwk as JWK, 'sha256')).toBe(jkt)
    expect(checked.payload.ath).toBe(sha256b64u(dpop))
    // And the embedded key really is the key's public key.
    const imported = await importJWK(checked.protectedHeader.jwk as JWK, 'ES256')
    expect((imported as { type?: string }).type).toBe('public')
  })
})

describe('actorChain', () => {
  it('nests act claims nearest first for one, two and three hops', () => {
    expect(actorChain()).toBeUndefined()
    expect(actorChain('a')).toEqual({ sub: 'a' })
    expect(actorChain('a', 'b')).toEqual({ sub: 'a', act: { sub: 'b' } })
    expect(actorChain('a', 'b', 'c')).toEqual({ sub: 'a', act: { sub: 'b', act: { sub: 'c' } } })
    expect(() => actorChain('a', '')).toThrow(TypeError)
    expect(() => actorChain('a', 1 as unknown as string)).toThrow(TypeError)
  })

  it('signs into an on-behalf-of token; no actor leaves act out', async () => {
    const issuer = await startTestIssuer()
    try {
      const frontend = 'spiffe://example.org/ns/web/sa/frontend'
      const gateway = 'spiffe://example.org/ns/edge/sa/gateway'
      const obo = await issuer.signAccessToken({ sub: 'user:alice', act: actorChain(frontend, gateway) })
      expect(decodeJwt(obo).act).toEqual({ sub: frontend, act: { sub: gateway } })
      expect(decodeJwt(await issuer.signAccessToken({ sub: 'user:alice', act: actorChain() }))).not.toHaveProperty('act')
    } finally {
      await issuer.close()
    }
  })
})
