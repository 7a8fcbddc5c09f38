import { describe, expect, it } from 'vitest'
import { AuthError, type AuthErrorCode } from '../src/errors.js'
import { applyChallenge, problemType, toHttpResponse, toProblem, type ChallengeContext } from '../src/http-mapping.js'

describe('applyChallenge', () => {
  it.each<[string, AuthError, string]>([
    ['credentials_missing', new AuthError('credentials_missing', 'an access token is required'), 'Bearer realm="api"'],
    ['mtls_required', new AuthError('mtls_required', 'a trusted client certificate is required'), 'Bearer realm="api"'],
    ['peer_unauthorized', new AuthError('peer_unauthorized', 'client certificate has expired'), 'Bearer realm="api"'],
    [
      'invalid_request',
      new AuthError('invalid_request', 'more than one Authorization header'),
      'Bearer realm="api", error="invalid_request", error_description="more than one Authorization header"',
    ],
    ['invalid_token', new AuthError('invalid_token', 'token expired'), 'Bearer realm="api", error="invalid_token", error_description="token expired"'],
    [
      'insufficient_scope with scopes',
      new AuthError('insufficient_scope', 'the token lacks a required scope', { side: 'caller', scope: ['a', 'b'] }),
      'Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required scope", scope="a b"',
    ],
    [
      'insufficient_scope with an empty scope list',
      new AuthError('insufficient_scope', 'the token lacks a required scope', { scope: [] }),
      'Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required scope"',
    ],
    [
      'caller_forbidden',
      new AuthError('caller_forbidden', 'the calling service is not allowed on this route', { side: 'caller' }),
      'Bearer realm="api", error="insufficient_scope", error_description="the calling service is not allowed on this route"',
    ],
    [
      'caller_scope_exceeded',
      new AuthError('caller_scope_exceeded', "a required scope is beyond the calling service's allowance", { side: 'caller', scope: ['orders:write'] }),
      `Bearer realm="api", error="insufficient_scope", error_description="a required scope is beyond the calling service's allowance", scope="orders:write"`,
    ],
    [
      'on_behalf_of_required',
      new AuthError('on_behalf_of_required', 'this route requires a call on behalf of a user', { side: 'user' }),
      'Bearer realm="api", error="insufficient_scope", error_description="this route requires a call on behalf of a user"',
    ],
    [
      'on_behalf_of_forbidden',
      new AuthError('on_behalf_of_forbidden', 'this route does not accept calls on behalf of a user', { side: 'caller' }),
      'Bearer realm="api", error="insufficient_scope", error_description="this route does not accept calls on behalf of a user"',
    ],
  ])('writes the Bearer challenge for %s', (_case, error, challenge) => {
    expect(applyChallenge(error, 'api')).toBe(error)
    expect(error.headers).toEqual({ 'www-authenticate': challenge })
  })

  it('uses the given realm', () => {
    expect(applyChallenge(new AuthError('credentials_missing', 'x'), 'orders api').headers).toEqual({ 'www-authenticate': 'Bearer realm="orders api"' })
  })

  it.each([
    ['a quote', 'say "hi"', 'say ?hi?'],
    ['a backslash', 'a\\b', 'a?b'],
    ['CR LF (header injection)', 'x\r\nSet-Cookie: a=b', 'x??Set-Cookie: a=b'],
    ['a tab', 'a\tb', 'a?b'],
    ['non-ASCII', 'caf\u00e9 \u{1F600}', 'caf? ??'],
    ['DEL', 'a\x7fb', 'a?b'],
  ])('replaces %s outside the RFC 6750 character set with "?"', (_case, description, expected) => {
    const error = applyChallenge(new AuthError('invalid_token', description), 'api')
    expect(error.headers['www-authenticate']).toBe(`Bearer realm="api", error="invalid_token", error_description="${expected}"`)
  })

  it('sanitizes the realm and the scope too', () => {
    const error = applyChallenge(new AuthError('insufficient_scope', 'x', { scope: ['a"b', 'c\\d'] }), 're"alm')
    expect(error.headers['www-authenticate']).toBe('Bearer realm="re?alm", error="insufficient_scope", error_description="x", scope="a?b c?d"')
  })

  it.each([
    [undefined, '30'],
    [5, '5'],
    [4.2, '5'],
    [0.1, '1'],
    [0, '1'],
    [-3, '1'],
  ])('answers a 503 with retry-after (retryAfterSeconds %s -> %s) and no challenge', (retryAfterSeconds, header) => {
    const error = new AuthError('keys_unavailable', 'the issuer keys are temporarily unavailable', retryAfterSeconds === undefined ? {} : { retryAfterSeconds })
    applyChallenge(error, 'api')
    expect(error.headers).toEqual({ 'retry-after': header })
  })

  it('replaces headers set earlier', () => {
    const error = new AuthError('invalid_token', 'x')
    error.headers = { 'x-old': '1' }
    applyChallenge(error, 'api')
    expect(error.headers).toEqual({ 'www-authenticate': 'Bearer realm="api", error="invalid_token", error_description="x"' })
  })
})

describe('applyChallenge with a ChallengeContext', () => {
  const ALGS = 'ES256 EdDSA'
  const BEARER = 'Bearer realm="api"'
  const DPOP = `DPoP realm="api", algs="${ALGS}"`
  const params = (code: string, description: string) => `error="${code}", error_description="${description}"`

  it.each<[string, AuthError, ChallengeContext, string]>([
    [
      'no error: both challenges, Bearer first',
      new AuthError('credentials_missing', 'an access token is required'),
      { realm: 'api', dpopAlgs: ALGS },
      `${BEARER}, ${DPOP}`,
    ],
    ['a realm string equals { realm }', new AuthError('invalid_token', 'x'), { realm: 'api' }, `${BEARER}, ${params('invalid_token', 'x')}`],
    [
      'invalid_token of a Bearer request: in Bearer',
      new AuthError('invalid_token', 'token expired'),
      { realm: 'api', dpopAlgs: ALGS, scheme: 'bearer' },
      `${BEARER}, ${params('invalid_token', 'token expired')}, ${DPOP}`,
    ],
    [
      'invalid_request before the scheme is known: in Bearer',
      new AuthError('invalid_request', 'more than one Authorization header'),
      { realm: 'api', dpopAlgs: ALGS },
      `${BEARER}, ${params('invalid_request', 'more than one Authorization header')}, ${DPOP}`,
    ],
    [
      'invalid_token of a DPoP request: in DPoP',
      new AuthError('invalid_token', 'token is bound to another DPoP key'),
      { realm: 'api', dpopAlgs: ALGS, scheme: 'dpop' },
      `${BEARER}, ${DPOP}, ${params('invalid_token', 'token is bound to another DPoP key')}`,
    ],
    [
      'invalid_dpop_proof of a Bearer request: in DPoP',
      new AuthError('invalid_dpop_proof', 'DPoP proof signature invalid'),
      { realm: 'api', dpopAlgs: ALGS, scheme: 'bearer' },
      `${BEARER}, ${DPOP}, ${params('invalid_dpop_proof', 'DPoP proof signature invalid')}`,
    ],
    [
      'invalid_dpop_proof before the scheme is known: in DPoP',
      new AuthError('invalid_dpop_proof', 'malformed DPoP proof'),
      { realm: 'api', dpopAlgs: ALGS },
      `${BEARER}, ${DPOP}, ${params('invalid_dpop_proof', 'malformed DPoP proof')}`,
    ],
    [
      'use_dpop_nonce of a Bearer request: in DPoP',
      new AuthError('use_dpop_nonce', 'a fresh DPoP nonce is required'),
      { realm: 'api', dpopAlgs: ALGS, scheme: 'bearer' },
      `${BEARER}, ${DPOP}, ${params('use_dpop_nonce', 'a fresh DPoP nonce is required')}`,
    ],
    [
      'bearer: false, no error: only DPoP',
      new AuthError('credentials_missing', 'an access token is required'),
      { realm: 'api', dpopAlgs: ALGS, bearer: false },
      DPOP,
    ],
    [
      'bearer: false, a Bearer request: the error in DPoP',
      new AuthError('invalid_token', 'a DPoP-bound token is required'),
      { realm: 'api', dpopAlgs: ALGS, bearer: false, scheme: 'bearer' },
      `${DPOP}, ${params('invalid_token', 'a DPoP-bound token is required')}`,
    ],
    [
      'DPoP off (dpopAlgs undefined): only Bearer, whatever the scheme',
      new AuthError('invalid_token', 'token expired'),
      { realm: 'api', scheme: 'dpop' },
      `${BEARER}, ${params('invalid_token', 'token expired')}`,
    ],
    [
      'DPoP off and bearer: false: Bearer still (a challenge is always sent)',
      new AuthError('credentials_missing', 'an access token is required'),
      { realm: 'api', bearer: false },
      BEARER,
    ],
    [
      'insufficient_scope of a DPoP request: the scope goes with the error in DPoP',
      new AuthError('insufficient_scope', 'the token lacks a required scope', { scope: ['orders:read', 'orders:write'] }),
      { realm: 'api', dpopAlgs: ALGS, scheme: 'dpop' },
      `${BEARER}, ${DPOP}, ${params('insufficient_scope', 'the token lacks a required scope')}, scope="orders:read orders:write"`,
    ],
    [
      'insufficient_scope of a Bearer request: the scope goes with the error in Bearer',
      new AuthError('caller_scope_exceeded', 'beyond the allowance', { side: 'caller', scope: ['orders:write'] }),
      { realm: 'api', dpopAlgs: ALGS, scheme: 'bearer' },
      `${BEARER}, ${params('insufficient_scope', 'beyond the allowance')}, scope="orders:write", ${DPOP}`,
    ],
    [
      'a sanitized realm and algs',
      new AuthError('credentials_missing', 'x'),
      { realm: 're"alm', dpopAlgs: 'ES256\r\nX' },
      'Bearer realm="re?alm", DPoP realm="re?alm", algs="ES256??X"',
    ],
  ])('writes %s', (_case, error, context, challenge) => {
    expect(applyChallenge(error, context)).toBe(error)
    expect(error.headers).toEqual({ 'www-authenticate': challenge })
  })

  it('sends DPoP-Nonce with use_dpop_nonce', () => {
    const error = applyChallenge(new AuthError('use_dpop_nonce', 'a fresh DPoP nonce is required'), {
      realm: 'api',
      dpopAlgs: ALGS,
      scheme: 'dpop',
      dpopNonce: '3rqtx.abc',
    })
    expect(error.headers).toEqual({
      'www-authenticate': `${BEARER}, ${DPOP}, ${params('use_dpop_nonce', 'a fresh DPoP nonce is required')}`,
      'dpop-nonce': '3rqtx.abc',
    })
  })

  it.each<[string, AuthError]>([
    ['invalid_dpop_proof', new AuthError('invalid_dpop_proof', 'DPoP proof is too old')],
    ['invalid_token', new AuthError('invalid_token', 'token expired')],
    ['credentials_missing', new AuthError('credentials_missing', 'an access token is required')],
    ['insufficient_scope', new AuthError('insufficient_scope', 'x', { scope: ['a'] })],
  ])('sends no DPoP-Nonce with %s, even when one is at hand', (_case, error) => {
    applyChallenge(error, { realm: 'api', dpopAlgs: ALGS, scheme: 'dpop', dpopNonce: '3rqtx.abc' })
    expect(error.headers['dpop-nonce']).toBeUndefined()
    expect(Object.keys(error.headers)).toEqual(['www-authenticate'])
  })

  it('sends no DPoP-Nonce with use_dpop_nonce when none is at hand', () => {
    const error = applyChallenge(new AuthError('use_dpop_nonce', 'a fresh DPoP nonce is required'), { realm: 'api', dpopAlgs: ALGS })
    expect(Object.keys(error.headers)).toEqual(['www-authenticate'])
  })

  it.each<[string, AuthError, string]>([
    ['replay_store_unavailable', new AuthError('replay_store_unavailable', 'DPoP replay protection is temporarily unavailable', { retryAfterSeconds: 1 }), '1'],
    ['keys_unavailable', new AuthError('keys_unavailable', 'the issuer keys are temporarily unavailable'), '30'],
  ])('answers %s (503) with retry-after only, whatever the context', (_case, error, retryAfter) => {
    applyChallenge(error, { realm: 'api', dpopAlgs: ALGS, bearer: false, scheme: 'dpop', dpopNonce: '3rqtx.abc' })
    expect(error.headers).toEqual({ 'retry-after': retryAfter })
  })
})

describe('toProblem', () => {
  it.each<[AuthErrorCode, number, string]>([
    ['credentials_missing', 401, 'Authentication required'],
    ['invalid_request', 400, 'Malformed authentication request'],
    ['invalid_token', 401, 'Invalid access token'],
    ['mtls_required', 401, 'Client certificate required'],
    ['peer_unauthorized', 401, 'Client certificate not accepted'],
    ['insufficient_scope', 403, 'Insufficient scope'],
    ['caller_forbidden', 403, 'Calling service not allowed'],
    ['caller_scope_exceeded', 403, "Beyond the calling service's allowance"],
    ['on_behalf_of_required', 403, 'A user is required'],
    ['on_behalf_of_forbidden', 403, 'Calls on behalf of a user are not allowed'],
    ['keys_unavailable', 503, 'Issuer keys unavailable'],
    ['invalid_dpop_proof', 401, 'Invalid DPoP proof'],
    ['use_dpop_nonce', 401, 'DPoP nonce required'],
    ['replay_store_unavailable', 503, 'Replay protection unavailable'],
  ])('describes %s as status %i titled %s', (code, status, title) => {
    expect(toProblem(new AuthError(code, 'detail text'))).toEqual({
      type: `urn:callsign:problem:${code}`,
      title,
      status,
      detail: 'detail text',
      code,
    })
    expect(problemType(code)).toBe(`urn:callsign:problem:${code}`)
  })

  it('adds side and scope when present', () => {
    const error = new AuthError('insufficient_scope', 'the user has not granted a required scope', { side: 'user', scope: ['a', 'b'] })
    expect(toProblem(error)).toEqual({
      type: 'urn:callsign:problem:insufficient_scope',
      title: 'Insufficient scope',
      status: 403,
      detail: 'the user has not granted a required scope',
      code: 'insufficient_scope',
      side: 'user',
      scope: 'a b',
    })
  })

  it('never includes the cause', () => {
    const error = new AuthError('invalid_token', 'token expired', { cause: new Error('secret claim value') })
    expect(JSON.stringify(toProblem(error))).not.toContain('secret')
  })
})

describe('toHttpResponse', () => {
  it('answers a 401 with the challenge, problem+json and no-store', () => {
    const response = toHttpResponse(new AuthError('invalid_token', 'token expired'))
    expect(response).toEqual({
      status: 401,
      headers: {
        'www-authenticate': 'Bearer realm="api", error="invalid_token", error_description="token expired"',
        'content-type': 'application/problem+json',
        'cache-control': 'no-store',
      },
      body: JSON.stringify({
        type: 'urn:callsign:problem:invalid_token',
        title: 'Invalid access token',
        status: 401,
        detail: 'token expired',
        code: 'invalid_token',
      }),
    })
  })

  it('answers a 403 with the scope challenge', () => {
    const response = toHttpResponse(new AuthError('insufficient_scope', 'the token lacks a required scope', { side: 'caller', scope: ['a', 'b'] }), 'orders')
    expect(response.status).toBe(403)
    expect(response.headers['www-authenticate']).toBe(
      'Bearer realm="orders", error="insufficient_scope", error_description="the token lacks a required scope", scope="a b"',
    )
    expect(JSON.parse(response.body)).toEqual({
      type: 'urn:callsign:problem:insufficient_scope',
      title: 'Insufficient scope',
      status: 403,
      detail: 'the token lacks a required scope',
      code: 'insufficient_scope',
      side: 'caller',
      scope: 'a b',
    })
  })

  it('answers a 503 with retry-after and no challenge', () => {
    const response = toHttpResponse(new AuthError('keys_unavailable', 'the issuer keys are temporarily unavailable', { retryAfterSeconds: 5 }))
    expect(response.status).toBe(503)
    expect(response.headers).toEqual({ 'retry-after': '5', 'content-type': 'application/problem+json', 'cache-control': 'no-store' })
  })

  it('answers replay_store_unavailable like any 503: retry-after and no challenge', () => {
    const response = toHttpResponse(new AuthError('replay_store_unavailable', 'replay protection is unavailable', { retryAfterSeconds: 2 }))
    expect(response.status).toBe(503)
    expect(response.headers).toEqual({ 'retry-after': '2', 'content-type': 'application/problem+json', 'cache-control': 'no-store' })
  })

  it('keeps a challenge the guard already applied with its realm', () => {
    const error = applyChallenge(new AuthError('credentials_missing', 'an access token is required'), 'orders')
    expect(toHttpResponse(error, 'api').headers['www-authenticate']).toBe('Bearer realm="orders"')
  })

  it('exposes status, statusCode and expose for framework error handlers', () => {
    const error = new AuthError('caller_forbidden', 'x')
    expect([error.status, error.statusCode, error.expose, error.name]).toEqual([403, 403, true, 'AuthError'])
  })
})
