/**
 * The `services` option (a TypeError naming `services.<name>.<field>` for every bad value) and
 * the bounded `WWW-Authenticate` parser the call side reads refusals with.
 */
import { describe, expect, it } from 'vitest'
import { parseChallenges, resolveServices } from '@callsign/client'

describe('resolveServices', () => {
  it('resolves a service: resource defaults to the url as written (an audience is compared byte for byte), scopes sorted and unique, spiffeId compiled', () => {
    const services = resolveServices({
      orders: { url: 'https://orders.internal', scopes: ['orders:write', 'orders:read', 'orders:write'], spiffeId: 'spiffe://example.org/ns/orders/*' },
      local: { url: new URL('http://127.0.0.1:8080/api'), resource: 'urn:example:local' },
    })
    const orders = services.get('orders')!
    expect(orders).toMatchObject({ name: 'orders', url: 'https://orders.internal/', origin: 'https://orders.internal', resource: 'https://orders.internal' })
    expect(orders.scopes).toEqual(['orders:read', 'orders:write'])
    expect(orders.spiffeId?.matches('spiffe://example.org/ns/orders/sa/api')).toBe(true)
    expect(orders.spiffeId?.matches('spiffe://example.org/ns/orders-evil/sa/api')).toBe(false)
    expect(Object.isFrozen(orders)).toBe(true)
    expect(services.get('local')).toMatchObject({ url: 'http://127.0.0.1:8080/api', resource: 'urn:example:local', scopes: [], spiffeId: undefined })
    expect(resolveServices(undefined).size).toBe(0)
    expect(orders.audience).toEqual([])
    expect(resolveServices({ a: { url: 'https://a.internal', audience: 'a-api' } }).get('a')!.audience).toEqual(['a-api'])
    expect(resolveServices({ a: { url: 'https://a.internal', audience: ['x', 'y', 'x'] } }).get('a')!.audience).toEqual(['x', 'y'])
  })

  it.each([
    ['not an object', 'orders', '"services"'],
    ['a service that is not an object', { orders: 'https://x' }, '"services.orders" must be an object'],
    [
      'an unknown key',
      { orders: { url: 'https://x', scope: ['a'] } },
      '"services.orders.scope" is not a known option (known: url, resource, scopes, audience, spiffeId, maxConnections)',
    ],
    ['no url', { orders: {} }, '"services.orders.url" must be an https URL'],
    ['a relative url', { orders: { url: '/orders' } }, '"services.orders.url" must be an absolute https URL'],
    ['http off loopback', { orders: { url: 'http://orders.internal' } }, '"services.orders.url" must be an https URL (http only on a loopback host'],
    ['another scheme', { orders: { url: 'ftp://orders.internal' } }, '"services.orders.url" must be an https URL'],
    ['credentials', { orders: { url: 'https://user:pw@orders.internal' } }, '"services.orders.url" must not carry credentials'],
    ['a query', { orders: { url: 'https://orders.internal/?a=1' } }, '"services.orders.url" must not have a query or a fragment'],
    ['an empty query', { orders: { url: 'https://orders.internal/?' } }, '"services.orders.url" must not have a query or a fragment'],
    ['a fragment', { orders: { url: 'https://orders.internal/#x' } }, '"services.orders.url" must not have a query or a fragment'],
    ['a relative resource', { orders: { url: 'https://o.internal', resource: 'orders' } }, '"services.orders.resource" must be an absolute URI'],
    [
      'a resource with a fragment',
      { orders: { url: 'https://o.internal', resource: 'https://o.internal/#a' } },
      '"services.orders.resource" must not have a fragment',
    ],
    ['scopes not an array', { orders: { url: 'https://o.internal', scopes: 'a b' } }, '"services.orders.scopes" must be an array'],
    ['a scope with a space', { orders: { url: 'https://o.internal', scopes: ['a b'] } }, '"services.orders.scopes" must hold non-empty scope strings'],
    ['an empty scope', { orders: { url: 'https://o.internal', scopes: [''] } }, '"services.orders.scopes" must hold non-empty scope strings'],
    ['a scope that is not a string', { orders: { url: 'https://o.internal', scopes: [1] } }, '"services.orders.scopes" must hold non-empty scope strings'],
    ['an empty audience', { orders: { url: 'https://o.internal', audience: '' } }, '"services.orders.audience" must be a non-empty string or an array of them'],
    ['an audience list with a number', { orders: { url: 'https://o.internal', audience: ['a', 1] } }, '"services.orders.audience" must be a non-empty string'],
    ['an empty audience list', { orders: { url: 'https://o.internal', audience: [] } }, '"services.orders.audience" must be a non-empty string'],
    ['a spiffeId that is a client id', { orders: { url: 'https://o.internal', spiffeId: 'orders' } }, '"services.orders.spiffeId" must be a SPIFFE ID'],
    [
      'a malformed spiffeId',
      { orders: { url: 'https://o.internal', spiffeId: 'spiffe://Example.org//x' } },
      '"services.orders.spiffeId" ("spiffe://Example.org//x") is not a valid SPIFFE ID',
    ],
    ['a wildcard inside', { orders: { url: 'https://o.internal', spiffeId: 'spiffe://example.org/*/x' } }, '"services.orders.spiffeId"'],
    ['a spiffeId over http', { orders: { url: 'http://localhost:1', spiffeId: 'spiffe://example.org/ns/a' } }, '"services.orders.spiffeId" needs an https url'],
    [
      'two services at one origin with different spiffeIds',
      { a: { url: 'https://o.internal/a', spiffeId: 'spiffe://example.org/ns/a' }, b: { url: 'https://o.internal/b' } },
      '"services.b.spiffeId" must be the same as services.a.spiffeId: both are served at https://o.internal',
    ],
  ])('refuses %s', (_title, value, message) => {
    expect(() => resolveServices(value)).toThrow(TypeError)
    expect(() => resolveServices(value)).toThrow(message)
  })
})

describe('parseChallenges', () => {
  it.each([
    [
      'a Bearer challenge',
      'Bearer realm="api", error="invalid_token", error_description="the token expired"',
      [{ scheme: 'Bearer', parameters: { realm: 'api', error: 'invalid_token', error_description: 'the token expired' } }],
    ],
    [
      'two challenges (as two headers joined)',
      'Bearer realm="api", DPoP algs="ES256 EdDSA", error="use_dpop_nonce"',
      [
        { scheme: 'Bearer', parameters: { realm: 'api' } },
        { scheme: 'DPoP', parameters: { algs: 'ES256 EdDSA', error: 'use_dpop_nonce' } },
      ],
    ],
    [
      'token values and odd spacing',
      'DPoP  error = invalid_dpop_proof ,algs=ES256',
      [{ scheme: 'DPoP', parameters: { error: 'invalid_dpop_proof', algs: 'ES256' } }],
    ],
    [
      'escapes and commas in a quoted value',
      'Bearer error_description="a \\"quoted\\", value"',
      [{ scheme: 'Bearer', parameters: { error_description: 'a "quoted", value' } }],
    ],
    ['a bare scheme', 'Bearer', [{ scheme: 'Bearer', parameters: {} }]],
    ['parameter names in lower case, the first of a repeated one kept', 'Bearer ERROR="a", error="b"', [{ scheme: 'Bearer', parameters: { error: 'a' } }]],
    [
      'a token68 skipped',
      'Basic dXNlcjpwYXNz, Bearer realm="x"',
      [
        { scheme: 'Basic', parameters: {} },
        { scheme: 'Bearer', parameters: { realm: 'x' } },
      ],
    ],
    ['an unterminated quoted string: what was read before', 'Bearer realm="x", error="oops', [{ scheme: 'Bearer', parameters: { realm: 'x' } }]],
    ['garbage: nothing', '"??"', []],
    ['absent', null, []],
    ['above 8 KiB: nothing', `Bearer realm="${'x'.repeat(9000)}"`, []],
  ])('%s', (_title, header, expected) => {
    expect(parseChallenges(header).map((challenge) => ({ scheme: challenge.scheme, parameters: { ...challenge.parameters } }))).toEqual(expected)
  })

  it('is bounded: at most 16 challenges of 32 parameters', () => {
    const many = Array.from({ length: 40 }, (_, i) => `S${i} a=1`).join(', ')
    expect(parseChallenges(many)).toHaveLength(16)
    const wide = `Bearer ${Array.from({ length: 50 }, (_, i) => `p${i}="v"`).join(', ')}`
    expect(Object.keys(parseChallenges(wide)[0]!.parameters)).toHaveLength(32)
  })

  it('a parameter named __proto__ is a plain parameter', () => {
    const [challenge] = parseChallenges('Bearer __proto__="x", error="y"')
    expect(challenge!.parameters.error).toBe('y')
    expect(Object.getPrototypeOf(challenge!.parameters)).toBe(null)
  })
})
