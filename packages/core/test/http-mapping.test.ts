import { describe, expect, it } from 'vitest'
import { AuthError, type AuthErrorCode } from '../src/errors.js'
import { applyChallenge, problemType, toHttpResponse, toProblem } from '../src/http-mapping.js'

describe('applyChallenge', () => {
  it.each<[string, AuthError, string]>([
    ['credentials_missing', new AuthError('credentials_missing', 'an access token is required'), 'Bearer realm="api"'],
    ['mtls_required', new AuthError('mtls_required', 'a trusted client certificate is required'), 'Bearer realm="api"'],
    ['peer_unauthorized', new AuthError('peer_unauthorized', 'client certificate has expired'), 'Bearer realm="api"'],
    ['invalid_request', new AuthError('invalid_request', 'more than one Authorization header'), 'Bearer realm="api", error="invalid_request", error_description="more than one Authorization header"'],
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
      body: JSON.stringify({ type: 'urn:callsign:problem:invalid_token', title: 'Invalid access token', status: 401, detail: 'token expired', code: 'invalid_token' }),
    })
  })

  it('answers a 403 with the scope challenge', () => {
    const response = toHttpResponse(new AuthError('insufficient_scope', 'the token lacks a required scope', { side: 'caller', scope: ['a', 'b'] }), 'orders')
    expect(response.status).toBe(403)
    expect(response.headers['www-authenticate']).toBe('Bearer realm="orders", error="insufficient_scope", error_description="the token lacks a required scope", scope="a b"')
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
