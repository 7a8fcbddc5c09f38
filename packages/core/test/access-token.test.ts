import { startTestIssuer, type SignOptions, type TestIssuer } from '@callsign/testing'
import { SignJWT } from 'jose'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { MAX_ACTOR_DEPTH, verifyAccessToken } from '../src/access-token.js'
import { decodeJsonObject } from '../src/internal/jws.js'
import { IssuerKeys } from '../src/jwks.js'
import { resolveConfig, type CallsignOptions, type IssuerOptions } from '../src/options.js'
import { refusal } from './refusal.js'

const NOW_S = 1_900_000_000
const NOW = NOW_S * 1000
const AUD = 'https://orders.example'
const WEB = 'spiffe://example.org/ns/web/sa/frontend'

let issuer: TestIssuer

beforeAll(async () => {
  issuer = await startTestIssuer()
})
afterAll(async () => {
  await issuer?.close()
})
beforeEach(() => {
  issuer.clearRequests()
})

function setup(options: Partial<CallsignOptions> = {}, issuerOptions: Partial<IssuerOptions> = {}) {
  const config = resolveConfig({
    issuers: { issuer: issuer.issuer, audience: AUD, jwksUri: issuer.jwksUri, ...issuerOptions },
    now: () => NOW,
    logger: { warn() {} },
    ...options,
  })
  const keys = new IssuerKeys(config)
  return { config, keys, verify: (token: string) => verifyAccessToken(token, config, keys) }
}

const sign = (claims: Record<string, unknown> = {}, options: SignOptions = {}): Promise<string> =>
  issuer.signAccessToken({ sub: WEB, client_id: WEB, ...claims }, { audience: AUD, issuedAt: NOW_S, ...options })

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
const craft = (header: unknown, payload: unknown, signature = 'c2lnbmF0dXJl'): string => `${b64(header)}.${b64(payload)}.${signature}`

async function expectInvalid(promise: Promise<unknown>, message: string): Promise<void> {
  const error = await refusal(promise)
  expect({ code: error.code, message: error.message }).toEqual({ code: 'invalid_token', message })
}

describe('verifyAccessToken: valid tokens', () => {
  it('returns the claims, the issuer, the scopes and the actors', async () => {
    const { verify, config } = setup()
    const token = await sign({
      sub: 'user:alice',
      client_id: WEB,
      scope: 'orders:read  orders:write orders:read',
      act: { sub: WEB, act: { sub: 'spiffe://example.org/ns/edge/sa/gateway' } },
      cnf: { 'x5t#S256': 'abc' },
    })
    const verified = await verify(token)
    expect(verified.issuer).toBe(config.issuers.get(issuer.issuer))
    expect(verified.scopes).toEqual(['orders:read', 'orders:write'])
    expect(verified.actors).toEqual([WEB, 'spiffe://example.org/ns/edge/sa/gateway'])
    expect(verified.claims).toMatchObject({
      iss: issuer.issuer,
      sub: 'user:alice',
      aud: AUD,
      iat: NOW_S,
      exp: NOW_S + 300,
      client_id: WEB,
      scope: 'orders:read  orders:write orders:read',
      cnf: { 'x5t#S256': 'abc' },
    })
    expect(typeof verified.claims.jti).toBe('string')
    expect(issuer.requestCount('/jwks.json')).toBe(1)
  })

  it('returns no scopes and no actors when the token has none', async () => {
    const verified = await setup().verify(await sign())
    expect(verified.scopes).toEqual([])
    expect(verified.actors).toEqual([])
  })

  it('accepts an audience array containing one configured audience', async () => {
    const { verify } = setup({}, { audience: ['other', AUD] })
    expect((await verify(await sign({ aud: ['x', AUD] }))).claims.aud).toEqual(['x', AUD])
  })

  it.each([
    ['expired within the clock tolerance', { issuedAt: NOW_S - 329, expiresInSeconds: 300 }],
    ['nbf within the clock tolerance', { notBefore: NOW_S + 30 }],
    ['iat within the clock tolerance', { issuedAt: NOW_S + 30 }],
  ])('accepts a token %s', async (_case, options) => {
    await expect(setup().verify(await sign({}, options))).resolves.toMatchObject({ issuer: { issuer: issuer.issuer } })
  })

  it('accepts a token within maxTokenAge', async () => {
    const { verify } = setup({ maxTokenAge: 600 })
    await expect(verify(await sign({}, { issuedAt: NOW_S - 630, expiresInSeconds: 3600 }))).resolves.toBeDefined()
  })

  it('uses the configured clock tolerance', async () => {
    const token = await sign({}, { issuedAt: NOW_S - 310, expiresInSeconds: 300 })
    await expect(setup({ clockTolerance: 11 }).verify(token)).resolves.toBeDefined()
    await expectInvalid(setup({ clockTolerance: 10 }).verify(token), 'token expired')
  })
})

describe('verifyAccessToken: refused without fetching keys', () => {
  it.each<[string, () => Promise<string>, string]>([
    ['an unknown issuer', () => sign({}, { issuer: 'https://evil.example' }), 'untrusted issuer'],
    ['an issuer differing by a trailing slash', () => sign({}, { issuer: `${issuer.issuer}/` }), 'untrusted issuer'],
    ['a non-string iss', () => sign({ iss: [issuer.issuer] }), 'untrusted issuer'],
    ['no iss', () => sign({}, { omit: ['iss'] }), 'untrusted issuer'],
    [
      'alg none with an empty signature',
      async () => `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64({ iss: issuer.issuer, sub: WEB, aud: AUD, exp: NOW_S + 60 })}.`,
      'malformed token',
    ],
    [
      'alg none with a signature',
      async () => craft({ alg: 'none', typ: 'at+jwt' }, { iss: issuer.issuer, sub: WEB, aud: AUD, exp: NOW_S + 60 }),
      'algorithm not allowed',
    ],
    [
      'HS256',
      () =>
        new SignJWT({ sub: WEB, aud: AUD, exp: NOW_S + 60 })
          .setIssuer(issuer.issuer)
          .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: issuer.currentKid })
          .sign(new TextEncoder().encode('a-shared-secret-of-at-least-32-bytes')),
      'algorithm not allowed',
    ],
    [
      'an algorithm outside the allowlist',
      async () => craft({ alg: 'RS256', typ: 'at+jwt' }, { iss: issuer.issuer, exp: NOW_S + 60 }),
      'algorithm not allowed',
    ],
    ['a missing alg', async () => craft({ typ: 'at+jwt' }, { iss: issuer.issuer, exp: NOW_S + 60 }), 'algorithm not allowed'],
    ['an empty kid', () => sign({}, { header: { kid: '' } }), 'malformed key id'],
    ['a numeric kid', () => sign({}, { header: { kid: 7 } }), 'malformed key id'],
    ['a kid over 256 characters', () => sign({}, { header: { kid: 'k'.repeat(257) } }), 'malformed key id'],
    ['5 parts (JWE)', async () => 'eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d', 'encrypted tokens are not accepted'],
    ['2 parts', async () => 'eyJhbGciOiJFUzI1NiJ9.e30', 'malformed token'],
    ['4 parts', async () => 'a.b.c.d', 'malformed token'],
    ['an empty header part', async () => `.${b64({ iss: issuer.issuer })}.c2ln`, 'malformed token'],
    ['an empty payload part', async () => `${b64({ alg: 'ES256' })}..c2ln`, 'malformed token'],
    ['a header that is not base64url', async () => `!!!.${b64({ iss: issuer.issuer })}.c2ln`, 'malformed token'],
    ['a payload that is not base64url', async () => `${b64({ alg: 'ES256' })}.e+30.c2ln`, 'malformed token'],
    ['a header that is not JSON', async () => `${b64('not json')}.${b64({ iss: issuer.issuer })}.c2ln`, 'malformed token'],
    ['a payload that is not JSON', async () => `${b64({ alg: 'ES256' })}.${b64('not json')}.c2ln`, 'malformed token'],
    ['a payload that is a JSON array', async () => `${b64({ alg: 'ES256' })}.${b64([issuer.issuer])}.c2ln`, 'malformed token'],
    ['an empty string', async () => '', 'malformed token'],
  ])('refuses %s', async (_case, make, message) => {
    const { verify } = setup({ algorithms: ['ES256'] })
    await expectInvalid(verify(await make()), message)
    expect(issuer.requestCount()).toBe(0)
  })

  describe("typ in 'at+jwt' mode (default)", () => {
    it.each(['at+jwt', 'AT+JWT', 'application/at+jwt', 'Application/AT+JWT'])('accepts typ %s', async (typ) => {
      await expect(setup().verify(await sign({}, { typ }))).resolves.toBeDefined()
    })

    it.each<[string, SignOptions]>([
      ['no typ', { typ: null }],
      ['typ JWT', { typ: 'JWT' }],
      ['typ jwt', { typ: 'jwt' }],
      ['typ dpop+jwt', { typ: 'dpop+jwt' }],
      ['typ application/jwt', { typ: 'application/jwt' }],
      ['a numeric typ', { header: { typ: 1 } }],
    ])('refuses %s before fetching keys', async (_case, options) => {
      await expectInvalid(setup().verify(await sign({}, options)), 'token type is not an access token')
      expect(issuer.requestCount()).toBe(0)
    })
  })

  describe("typ in 'jwt' mode", () => {
    it.each<[string, SignOptions]>([
      ['no typ', { typ: null }],
      ['typ JWT', { typ: 'JWT' }],
      ['typ jwt', { typ: 'jwt' }],
      ['typ application/jwt', { typ: 'application/jwt' }],
      ['typ at+jwt', { typ: 'at+jwt' }],
    ])('accepts %s', async (_case, options) => {
      await expect(setup({}, { typ: 'jwt' }).verify(await sign({}, options))).resolves.toBeDefined()
    })

    it.each<[string, SignOptions]>([
      ['typ dpop+jwt', { typ: 'dpop+jwt' }],
      ['typ logout+jwt', { typ: 'logout+jwt' }],
      ['typ secevent+jwt', { typ: 'secevent+jwt' }],
      ['typ JOSE', { typ: 'JOSE' }],
      ['a null typ', { header: { typ: null } }],
    ])('refuses %s before fetching keys', async (_case, options) => {
      await expectInvalid(setup({ typ: 'jwt' }).verify(await sign({}, options)), 'token type is not an access token')
      expect(issuer.requestCount()).toBe(0)
    })
  })
})

describe('verifyAccessToken: refused after verification', () => {
  it.each<[string, () => Promise<string>, string]>([
    ['a token expired beyond the tolerance', () => sign({}, { issuedAt: NOW_S - 330, expiresInSeconds: 300 }), 'token expired'],
    ['a token not yet valid (nbf)', () => sign({}, { notBefore: NOW_S + 31 }), 'token not yet valid'],
    ['a token issued in the future', () => sign({}, { issuedAt: NOW_S + 31 }), 'token issued in the future'],
    ['a token without exp', () => sign({}, { omit: ['exp'] }), 'token has no valid expiry'],
    ['a token with a string exp', () => sign({ exp: 'soon' }), 'token has no valid expiry'],
    ['a token with a string iat', () => sign({ iat: 'now' }), 'malformed iat claim'],
    ['another audience', () => sign({}, { audience: 'https://billing.example' }), 'token audience does not match'],
    ['an audience array without ours', () => sign({}, { audience: ['a', 'b'] }), 'token audience does not match'],
    ['no audience', () => sign({}, { omit: ['aud'] }), 'token audience does not match'],
    ['a crit header', () => sign({}, { header: { crit: ['urn:x'], 'urn:x': 1 } }), 'malformed token'],
    ['an empty sub', () => sign({ sub: '' }), 'malformed sub claim'],
    ['a numeric sub', () => sign({ sub: 42 }), 'malformed sub claim'],
    ['an empty client_id', () => sign({ client_id: '' }), 'malformed client_id claim'],
    ['an object azp', () => sign({ azp: { id: 'x' } }), 'malformed azp claim'],
    ['an array cnf', () => sign({ cnf: ['x'] }), 'malformed cnf claim'],
    ['a string cnf', () => sign({ cnf: 'x' }), 'malformed cnf claim'],
    ['a null cnf', () => sign({ cnf: null }), 'malformed cnf claim'],
    ['a scope array with the scope claim', () => sign({ scope: ['a', 'b'] }), 'malformed scope claim'],
    ['a numeric scope', () => sign({ scope: 1 }), 'malformed scope claim'],
    ['a scope with a quote', () => sign({ scope: 'a "b"' }), 'malformed scope claim'],
    ['a scope with a tab', () => sign({ scope: 'a\tb' }), 'malformed scope claim'],
    ['257 scopes', () => sign({ scope: Array.from({ length: 257 }, (_, i) => `s${i}`).join(' ') }), 'too many scopes'],
    ['a scope string over 32 KiB', () => sign({ scope: 'a'.repeat(256 * 128 + 1) }), 'scope claim too large'],
    ['a scope token over 256 characters', () => sign({ scope: 'a'.repeat(257) }), 'malformed scope claim'],
    ['an act string', () => sign({ act: WEB }), 'malformed act claim'],
    ['an act array', () => sign({ act: [{ sub: WEB }] }), 'malformed act claim'],
    ['a null act', () => sign({ act: null }), 'malformed act claim'],
    ['an act without sub', () => sign({ act: { iss: issuer.issuer } }), 'malformed act claim'],
    ['an act with an empty sub', () => sign({ act: { sub: '' } }), 'malformed act claim'],
    ['a nested act with a numeric sub', () => sign({ act: { sub: WEB, act: { sub: 1 } } }), 'malformed act claim'],
  ])('refuses %s', async (_case, make, message) => {
    await expectInvalid(setup().verify(await make()), message)
  })

  it('refuses a token whose signature does not match its payload', async () => {
    const [header, , signature] = (await sign({ scope: 'orders:read' })).split('.')
    const [, payload] = (await sign({ scope: 'orders:admin' })).split('.')
    await expectInvalid(setup().verify(`${header}.${payload}.${signature}`), 'signature verification failed')
  })

  it('refuses a token signed by a key the issuer does not publish', async () => {
    const other = await startTestIssuer()
    try {
      const token = await other.signAccessToken({ sub: WEB }, { issuer: issuer.issuer, audience: AUD, issuedAt: NOW_S })
      await expectInvalid(setup().verify(token), 'no key of the issuer matches the token')
      expect(issuer.requestCount('/jwks.json')).toBe(1)
      expect(other.requestCount()).toBe(0)
    } finally {
      await other.close()
    }
  })

  it('refuses a token signed by the right key under another kid', async () => {
    const forged = await sign({}, { header: { kid: 'not-the-kid' } })
    await expectInvalid(setup().verify(forged), 'no key of the issuer matches the token')
  })

  describe('maxTokenAge', () => {
    it('refuses a token older than maxTokenAge (plus tolerance) as too old', async () => {
      await expectInvalid(setup({ maxTokenAge: 600 }).verify(await sign({}, { issuedAt: NOW_S - 631, expiresInSeconds: 3600 })), 'token too old')
    })

    it('refuses a token issued in the future as such', async () => {
      await expectInvalid(setup({ maxTokenAge: 600 }).verify(await sign({}, { issuedAt: NOW_S + 31 })), 'token issued in the future')
    })

    it('requires iat', async () => {
      await expectInvalid(setup({ maxTokenAge: 600 }).verify(await sign({}, { omit: ['iat'] })), 'malformed iat claim')
    })

    it('does not require iat without maxTokenAge', async () => {
      await expect(setup().verify(await sign({}, { omit: ['iat'] }))).resolves.toBeDefined()
    })
  })
})

describe('verifyAccessToken: scope claims', () => {
  it.each<[string, Partial<IssuerOptions>, Record<string, unknown>, string[]]>([
    ['scope as a space-delimited string', { scopeClaim: 'scope' }, { scope: ' a  b a ' }, ['a', 'b']],
    ['an empty scope string', { scopeClaim: 'scope' }, { scope: '' }, []],
    ['scp as a string', { scopeClaim: 'scp' }, { scp: 'a b' }, ['a', 'b']],
    ['scp as an array', { scopeClaim: 'scp' }, { scp: ['a', 'b', 'a'] }, ['a', 'b']],
    ['permissions as an array', { scopeClaim: 'permissions' }, { permissions: ['orders:read', 'orders:write'] }, ['orders:read', 'orders:write']],
    ['only the configured claim', { scopeClaim: 'scp' }, { scope: 'x y', scp: ['a'] }, ['a']],
    ['a missing configured claim', { scopeClaim: 'permissions' }, { scope: 'x y' }, []],
    [
      'exactly 256 scopes',
      { scopeClaim: 'scope' },
      { scope: Array.from({ length: 256 }, (_, i) => `s${i}`).join(' ') },
      Array.from({ length: 256 }, (_, i) => `s${i}`),
    ],
  ])('reads %s', async (_case, issuerOptions, claims, scopes) => {
    expect((await setup({}, issuerOptions).verify(await sign(claims))).scopes).toEqual(scopes)
  })

  it.each<[string, Partial<IssuerOptions>, Record<string, unknown>, string]>([
    ['scp as a number', { scopeClaim: 'scp' }, { scp: 5 }, 'malformed scp claim'],
    ['scp as an object', { scopeClaim: 'scp' }, { scp: { a: true } }, 'malformed scp claim'],
    ['scp with a non-string entry', { scopeClaim: 'scp' }, { scp: ['a', 1] }, 'malformed scp claim'],
    ['scp with an empty entry', { scopeClaim: 'scp' }, { scp: ['a', ''] }, 'malformed scp claim'],
    ['scp with a space inside an entry', { scopeClaim: 'scp' }, { scp: ['a b'] }, 'malformed scp claim'],
    ['permissions with a null entry', { scopeClaim: 'permissions' }, { permissions: [null] }, 'malformed permissions claim'],
    ['permissions as a boolean', { scopeClaim: 'permissions' }, { permissions: true }, 'malformed permissions claim'],
    ['257 permissions', { scopeClaim: 'permissions' }, { permissions: Array.from({ length: 257 }, (_, i) => `p${i}`) }, 'too many scopes'],
  ])('refuses %s', async (_case, issuerOptions, claims, message) => {
    await expectInvalid(setup({}, issuerOptions).verify(await sign(claims)), message)
  })

  it('applies the guard-wide scopeClaim when the issuer sets none', async () => {
    expect((await setup({ scopeClaim: 'scp' }).verify(await sign({ scp: ['z'] }))).scopes).toEqual(['z'])
  })
})

describe('verifyAccessToken: delegation chain', () => {
  const chain = (depth: number): Record<string, unknown> | undefined => {
    let act: Record<string, unknown> | undefined
    for (let i = depth; i >= 1; i--) act = act === undefined ? { sub: `actor-${i}` } : { sub: `actor-${i}`, act }
    return act
  }

  it(`accepts a chain of ${MAX_ACTOR_DEPTH} actors, nearest first`, async () => {
    expect(MAX_ACTOR_DEPTH).toBe(8)
    const verified = await setup().verify(await sign({ act: chain(8) }))
    expect(verified.actors).toEqual(['actor-1', 'actor-2', 'actor-3', 'actor-4', 'actor-5', 'actor-6', 'actor-7', 'actor-8'])
  })

  it('refuses a chain deeper than 8', async () => {
    await expectInvalid(setup().verify(await sign({ act: chain(9) })), 'delegation chain too deep')
  })
})

describe('decodeJsonObject (a JWS segment as a JSON object)', () => {
  const segment = (bytes: number[] | string): string =>
    Buffer.from(typeof bytes === 'string' ? Buffer.from(bytes) : Uint8Array.from(bytes)).toString('base64url')

  it('decodes UTF-8 JSON, and skips a leading UTF-8 byte order mark as jose (WHATWG TextDecoder) does', () => {
    expect(decodeJsonObject(segment('{"sub":"caf\u00e9"}'))).toEqual({ sub: 'caf\u00e9' })
    expect(decodeJsonObject(segment([0xef, 0xbb, 0xbf, ...Buffer.from('{"a":1}')]))).toEqual({ a: 1 })
  })

  it.each([
    ['malformed UTF-8', [0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xc3, 0x22, 0x7d]],
    ['an overlong encoding', [0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x31, 0x7d]],
    ['a UTF-16 byte order mark', [0xfe, 0xff, 0x7b, 0x7d]],
    ['two UTF-8 byte order marks', [0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf, 0x7b, 0x7d]],
    ['a JSON array', [...Buffer.from('[1]')]],
    ['JSON null', [...Buffer.from('null')]],
  ])('throws on %s', (_case, bytes) => {
    expect(() => decodeJsonObject(segment(bytes))).toThrow()
  })

  it('throws on a length no base64 encoding has', () => {
    expect(decodeJsonObject('eyJhIjoxfQ')).toEqual({ a: 1 })
    expect(() => decodeJsonObject('eyJhIjoxfQxxx')).toThrow('invalid base64url') // 13 characters: 4n + 1
  })
})
