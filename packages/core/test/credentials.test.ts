import { describe, expect, it } from 'vitest'
import { readCredentials, MAX_TOKEN_LENGTH } from '../src/credentials.js'
import { AuthError } from '../src/errors.js'
import type { AuthRequest } from '../src/request.js'
import { refusalOf } from './refusal.js'

const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'

const refusal = (request: AuthRequest): AuthError => refusalOf(() => readCredentials(request))

const withHeader = (authorization: string | undefined, extra: Partial<AuthRequest> = {}): AuthRequest => ({
  method: 'GET',
  url: '/orders',
  headers: authorization === undefined ? {} : { authorization },
  ...extra,
})

describe('readCredentials', () => {
  it('reads a Bearer token from the Authorization header', () => {
    expect(readCredentials(withHeader(`Bearer ${TOKEN}`))).toEqual({ scheme: 'bearer', token: TOKEN, compact: true })
  })

  it.each(['bearer', 'BEARER', 'BeArEr'])('treats the scheme %s as Bearer (case-insensitive)', (scheme) => {
    expect(readCredentials(withHeader(`${scheme} ${TOKEN}`))).toEqual({ scheme: 'bearer', token: TOKEN, compact: true })
  })

  it('tolerates several spaces after the scheme and surrounding whitespace', () => {
    expect(readCredentials(withHeader(`  Bearer    ${TOKEN}  `))).toEqual({ scheme: 'bearer', token: TOKEN, compact: true })
  })

  it.each([
    ['all b64token characters', 'AZaz09-._~+/', 'AZaz09-._~+/'],
    ['trailing padding', 'abc==', 'abc=='],
  ])('accepts a token with %s', (_case, token, expected) => {
    expect(readCredentials(withHeader(`Bearer ${token}`))?.token).toBe(expected)
  })

  it.each([
    ['a JWS compact serialization', TOKEN, true],
    ['an opaque token', 'AZaz09-._~+/', false],
    ['two segments', 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0', false],
    ['an empty segment', 'eyJhbGciOiJFUzI1NiJ9..c2ln', false],
    ['four segments', `${TOKEN}.c2ln`, false],
    ['padding', `${TOKEN}=`, false],
    ['a b64token-only character in a segment', 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2l+', false],
  ])('says whether the token is shaped as a JWS (%s: %s)', (_case, token, compact) => {
    expect(readCredentials(withHeader(`Bearer ${token}`))?.compact).toBe(compact)
  })

  it('accepts a token of exactly the maximum length', () => {
    const token = 'a'.repeat(MAX_TOKEN_LENGTH)
    expect(readCredentials(withHeader(`Bearer ${token}`))?.token).toBe(token)
    expect(MAX_TOKEN_LENGTH).toBe(12 * 1024)
  })

  it('returns undefined when there is no Authorization header', () => {
    expect(readCredentials(withHeader(undefined))).toBeUndefined()
    expect(readCredentials({ headers: {}, headersDistinct: {}, rawHeaders: ['Host', 'x'] })).toBeUndefined()
  })

  it('prefers headersDistinct over headers', () => {
    const request = withHeader('Bearer first', { headersDistinct: { authorization: [`Bearer ${TOKEN}`] } })
    expect(readCredentials(request)?.token).toBe(TOKEN)
  })

  it('reads rawHeaders case-insensitively when headersDistinct is absent', () => {
    const request: AuthRequest = { headers: { authorization: 'Bearer first' }, rawHeaders: ['Host', 'h', 'AUTHORIZATION', `Bearer ${TOKEN}`] }
    expect(readCredentials(request)?.token).toBe(TOKEN)
  })

  it.each<[string, AuthRequest, string]>([
    [
      'two Authorization headers (headersDistinct)',
      withHeader(`Bearer ${TOKEN}`, { headersDistinct: { authorization: [`Bearer ${TOKEN}`, 'Bearer other'] } }),
      'more than one Authorization header',
    ],
    [
      'two Authorization headers (rawHeaders)',
      withHeader(`Bearer ${TOKEN}`, { rawHeaders: ['Authorization', `Bearer ${TOKEN}`, 'Host', 'h', 'authorization', 'Basic eDp5'] }),
      'more than one Authorization header',
    ],
    ['an access_token in the query', withHeader(undefined, { url: '/orders?x=1&access_token=abc' }), 'access tokens are not accepted in the query string'],
    ['an empty access_token in the query', withHeader(undefined, { url: '/orders?access_token' }), 'access tokens are not accepted in the query string'],
    [
      'a percent-encoded access_token name',
      withHeader(undefined, { url: '/orders?%61ccess%5Ftoken=abc' }),
      'access tokens are not accepted in the query string',
    ],
    ['a partly encoded access_token name', withHeader(undefined, { url: '/orders?access%5ftoken=abc' }), 'access tokens are not accepted in the query string'],
    [
      'an access_token in the query next to a valid header',
      withHeader(`Bearer ${TOKEN}`, { url: '/orders?access_token=abc#frag' }),
      'access tokens are not accepted in the query string',
    ],
    [
      'an access_token in originalUrl (mounted router)',
      withHeader(`Bearer ${TOKEN}`, { url: '/', originalUrl: '/api/orders?access_token=abc' }),
      'access tokens are not accepted in the query string',
    ],
    ['an access_token in the parsed body', withHeader(undefined, { body: { access_token: 'abc' } }), 'access tokens are not accepted in the request body'],
    [
      'an access_token in the parsed body next to a valid header',
      withHeader(`Bearer ${TOKEN}`, { body: { access_token: 'abc', other: 1 } }),
      'access tokens are not accepted in the request body',
    ],
    ['an empty Authorization header', withHeader(''), 'empty Authorization header'],
    ['a whitespace-only Authorization header', withHeader('   '), 'empty Authorization header'],
    ['a scheme without a token', withHeader('Bearer'), 'Bearer token missing'],
    ['a scheme followed by spaces only', withHeader('Bearer    '), 'Bearer token missing'],
    ['a tab after the scheme', withHeader(`Bearer\t${TOKEN}`), 'malformed Authorization header'],
    ['a scheme with invalid characters', withHeader(`Bea(rer ${TOKEN}`), 'malformed Authorization header'],
    ['a token with a space inside', withHeader('Bearer abc def'), 'malformed Bearer token'],
    ['a token with a comma', withHeader('Bearer abc,def'), 'malformed Bearer token'],
    ['a token with padding in the middle', withHeader('Bearer ab=c'), 'malformed Bearer token'],
    ['a token made of padding only', withHeader('Bearer ==='), 'malformed Bearer token'],
    ['a quoted token', withHeader('Bearer "abc"'), 'malformed Bearer token'],
    ['a non-ASCII token', withHeader('Bearer abc\u00e9'), 'malformed Bearer token'],
    ['an oversized token', withHeader(`Bearer ${'a'.repeat(MAX_TOKEN_LENGTH + 1)}`), 'Bearer token too large'],
  ])('refuses %s with invalid_request', (_case, request, message) => {
    const error = refusal(request)
    expect(error.code).toBe('invalid_request')
    expect(error.status).toBe(400)
    expect(error.message).toBe(message)
  })

  it.each([
    ['Basic eDp5', 'the Basic authorization scheme is not accepted'],
    ['Digest username="x"', 'the Digest authorization scheme is not accepted'],
    ['Negotiate', 'the Negotiate authorization scheme is not accepted'],
    ['Bear!er#x abc', 'the Bearerx authorization scheme is not accepted'],
    [`${'X'.repeat(17)} abc`, 'the given authorization scheme is not accepted'],
  ])('reports credentials_missing for another scheme: %s', (header, message) => {
    const error = refusal(withHeader(header))
    expect(error.code).toBe('credentials_missing')
    expect(error.status).toBe(401)
    expect(error.message).toBe(message)
  })

  it('reads the DPoP scheme with exactly one DPoP proof header', () => {
    const request = { headers: { authorization: `DPoP ${TOKEN}`, dpop: 'a.b.c' }, headersDistinct: { authorization: [`DPoP ${TOKEN}`], dpop: ['a.b.c'] } }
    expect(readCredentials(request)).toEqual({ scheme: 'dpop', token: TOKEN, compact: true, proof: 'a.b.c' })
  })

  it.each([
    ['no DPoP header', { authorization: [`DPoP ${TOKEN}`] }, 'DPoP proof missing'],
    ['two DPoP headers', { authorization: [`dpop ${TOKEN}`], dpop: ['a.b.c', 'd.e.f'] }, 'more than one DPoP header'],
  ])('refuses the DPoP scheme with %s as invalid_dpop_proof', (_case, headersDistinct, message) => {
    const error = refusal({ headers: {}, headersDistinct })
    expect({ code: error.code, status: error.status, message: error.message }).toEqual({ code: 'invalid_dpop_proof', status: 401, message })
  })

  it('reports credentials_missing for the DPoP scheme when DPoP is off', () => {
    let error: unknown
    try {
      readCredentials({ headers: { authorization: `DPoP ${TOKEN}` } }, false)
    } catch (e) {
      error = e
    }
    expect((error as { code?: string }).code).toBe('credentials_missing')
  })

  it.each([
    ['a query without the token parameter', '/orders?access=1&token=2&my_access_token=3'],
    ['a fragment naming access_token', '/orders#access_token=abc'],
    ['a fragment after the query', '/orders?a=1#access_token=abc'],
    ['an access_token path segment', '/access_token/x?y=%20'],
    ['a differently cased parameter', '/orders?ACCESS_TOKEN=abc'],
  ])('does not mistake %s for a query token', (_case, url) => {
    expect(readCredentials(withHeader(`Bearer ${TOKEN}`, { url }))?.token).toBe(TOKEN)
  })

  it.each([
    ['a Buffer body', Buffer.from('access_token=abc')],
    ['a string body', 'access_token=abc'],
    ['an inherited access_token', Object.create({ access_token: 'abc' }) as object],
    ['a null body', null],
  ])('ignores %s', (_case, body) => {
    expect(readCredentials(withHeader(`Bearer ${TOKEN}`, { body }))?.token).toBe(TOKEN)
  })
})
