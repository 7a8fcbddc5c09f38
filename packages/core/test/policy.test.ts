import { describe, expect, it } from 'vitest'
import type { AuthErrorCode, AuthSide } from '../src/errors.js'
import { resolveConfig } from '../src/options.js'
import { authorize, compileRule, findAllowance, type AuthRule, type ResolvedAllowance } from '../src/policy.js'
import type { AuthContext } from '../src/principal.js'
import { refusalOf as refusal } from './refusal.js'

const WEB = 'spiffe://example.org/ns/web/sa/frontend'
const BATCH = 'spiffe://example.org/ns/batch/sa/worker'

function allowances(callers: Record<string, string[]>): readonly ResolvedAllowance[] {
  return resolveConfig({ issuers: { issuer: 'https://auth.example.com', audience: 'a' }, callers }).callers!
}

function context(callerId: string, scopes: string[], user?: string): AuthContext {
  const auth: AuthContext = {
    caller: { id: callerId, source: 'mtls' },
    scopes,
    actors: [],
    binding: 'bearer',
    credential: 'token',
    issuer: 'https://auth.example.com',
    claims: { iss: 'https://auth.example.com', exp: 0 },
  }
  if (user !== undefined) auth.user = { sub: user }
  return auth
}

describe('compileRule', () => {
  it('compiles an empty rule', () => {
    const rule = compileRule()
    expect(rule).toMatchObject({ scopes: [], anyScopes: undefined, callers: undefined, onBehalfOf: 'optional' })
    expect(compileRule({})).toMatchObject({ scopes: [], onBehalfOf: 'optional' })
  })

  it('compiles every field and freezes the result', () => {
    const rule = compileRule({ scopes: ['a', 'b'], anyScopes: ['c'], callers: [WEB, 'spiffe://example.org/ns/batch/*'], onBehalfOf: 'required' })
    expect(rule.scopes).toEqual(['a', 'b'])
    expect(rule.anyScopes).toEqual(['c'])
    expect(rule.callers!.map((p) => p.source)).toEqual([WEB, 'spiffe://example.org/ns/batch/*'])
    expect(rule.onBehalfOf).toBe('required')
    expect(Object.isFrozen(rule)).toBe(true)
    expect(Object.isFrozen(rule.scopes)).toBe(true)
    expect(Object.isFrozen(rule.anyScopes)).toBe(true)
    expect(Object.isFrozen(rule.callers)).toBe(true)
  })

  it('copies the scope arrays so later changes to the input do not leak in', () => {
    const scopes = ['a']
    const rule = compileRule({ scopes })
    scopes.push('b')
    expect(rule.scopes).toEqual(['a'])
  })

  it('returns a compiled rule unchanged', () => {
    const rule = compileRule({ scopes: ['a'] })
    expect(compileRule(rule)).toBe(rule)
  })

  it.each<[string, unknown, string]>([
    ['a null rule', null, 'Callsign: requireAuth(rule): "rule" must be an object'],
    ['an array rule', ['a'], 'Callsign: requireAuth(rule): "rule" must be an object'],
    ['a string rule', 'orders:read', 'Callsign: requireAuth(rule): "rule" must be an object'],
    [
      'an unknown field',
      { scope: ['a'] },
      'Callsign: requireAuth(rule): "rule.scope" is not a known field (known: scopes, anyScopes, callers, onBehalfOf, senderConstraint, enforce)',
    ],
    ['scopes as a string', { scopes: 'a b' }, 'Callsign: "rule.scopes" must be an array of scope strings'],
    [
      'a scope with a space',
      { scopes: ['a b'] },
      'Callsign: "rule.scopes" contains an invalid scope "a b" (RFC 6749 scope-token: printable ASCII, no space, quote or backslash)',
    ],
    [
      'an empty scope',
      { scopes: [''] },
      'Callsign: "rule.scopes" contains an invalid scope "" (RFC 6749 scope-token: printable ASCII, no space, quote or backslash)',
    ],
    [
      'an invalid anyScopes entry',
      { anyScopes: ['a\\b'] },
      'Callsign: "rule.anyScopes" contains an invalid scope "a\\\\b" (RFC 6749 scope-token: printable ASCII, no space, quote or backslash)',
    ],
    ['empty anyScopes', { anyScopes: [] }, 'Callsign: "rule.anyScopes" must not be empty (omit it instead)'],
    ['empty callers', { callers: [] }, 'Callsign: "rule.callers" must be a non-empty array of caller patterns'],
    ['callers as a string', { callers: WEB }, 'Callsign: "rule.callers" must be a non-empty array of caller patterns'],
    [
      'a caller wildcard outside SPIFFE',
      { callers: [WEB, 'web-*'] },
      'Callsign: "rule.callers[1]" ("web-*"): wildcards are only allowed as a trailing "/*" of a SPIFFE ID',
    ],
    [
      'an invalid SPIFFE caller',
      { callers: ['spiffe://example.org/ns/../x'] },
      'Callsign: "rule.callers[0]" ("spiffe://example.org/ns/../x") is not a valid SPIFFE ID or prefix: expected spiffe://<trust-domain>/<path> or spiffe://<trust-domain>/<path>/*',
    ],
    ['an unknown onBehalfOf', { onBehalfOf: 'yes' }, `Callsign: "rule.onBehalfOf" must be 'required', 'forbidden' or 'optional' (got "yes")`],
  ])('refuses %s with a TypeError naming the field', (_case, rule, message) => {
    expect(() => compileRule(rule as AuthRule)).toThrow(new TypeError(message))
  })
})

describe('findAllowance', () => {
  const map = allowances({
    'spiffe://example.org/*': ['td'],
    'spiffe://example.org/ns/batch/*': ['batch'],
    'spiffe://example.org/ns/batch/sa/*': ['batch-sa'],
    [BATCH]: ['exact'],
    'orders-client': ['client'],
  })

  it.each([
    [BATCH, ['exact']],
    ['spiffe://example.org/ns/batch/sa/other', ['batch-sa']],
    ['spiffe://example.org/ns/batch/jobs/x', ['batch']],
    ['spiffe://example.org/ns/batch-evil/x', ['td']],
    [WEB, ['td']],
    ['orders-client', ['client']],
  ])('picks the most specific allowance for %s', (caller, scopes) => {
    expect([...findAllowance(caller, map)!.scopes]).toEqual(scopes)
  })

  it('returns null when no pattern matches and undefined without a map', () => {
    expect(findAllowance('spiffe://other.org/ns/a', map)).toBeNull()
    expect(findAllowance('spiffe://example.org', map)).toBeNull()
    expect(findAllowance('other-client', map)).toBeNull()
    expect(findAllowance(WEB, undefined)).toBeUndefined()
  })

  it('does not depend on the declaration order', () => {
    const reversed = allowances({
      'orders-client': ['client'],
      [BATCH]: ['exact'],
      'spiffe://example.org/ns/batch/*': ['batch'],
      'spiffe://example.org/*': ['td'],
    })
    expect([...findAllowance(BATCH, reversed)!.scopes]).toEqual(['exact'])
    expect([...findAllowance('spiffe://example.org/ns/batch/x', reversed)!.scopes]).toEqual(['batch'])
  })
})

describe('authorize', () => {
  const map = allowances({
    'spiffe://example.org/ns/web/*': ['orders:read', 'orders:write', 'profile'],
    [WEB]: ['orders:read'],
    'spiffe://example.org/ns/batch/*': ['orders:read', 'orders:export'],
    'orders-client': ['orders:read'],
  })

  it.each<[string, AuthContext, AuthRule, readonly ResolvedAllowance[] | undefined]>([
    ['an empty rule without a callers map', context('anyone', []), {}, undefined],
    ['required scopes held by a service', context(BATCH, ['orders:read', 'orders:export']), { scopes: ['orders:read', 'orders:export'] }, map],
    ['scopes held by a user within the caller allowance', context(WEB, ['orders:read'], 'alice'), { scopes: ['orders:read'], onBehalfOf: 'required' }, map],
    ['one of anyScopes granted and allowed', context(BATCH, ['orders:export']), { anyScopes: ['orders:write', 'orders:export'] }, map],
    ['a caller matching a rule prefix', context(BATCH, []), { callers: ['spiffe://example.org/ns/batch/*'] }, map],
    ['a client-id caller', context('orders-client', ['orders:read']), { callers: ['orders-client'], scopes: ['orders:read'] }, map],
    ['a service-only call on a forbidden-user route', context(BATCH, []), { onBehalfOf: 'forbidden' }, map],
    ['a user call on an optional route', context(BATCH, [], 'alice'), { onBehalfOf: 'optional' }, map],
  ])('allows %s', (_case, auth, rule, callers) => {
    expect(() => authorize(auth, compileRule(rule), callers)).not.toThrow()
  })

  it.each<[string, AuthContext, AuthRule, readonly ResolvedAllowance[] | undefined, AuthErrorCode, AuthSide, string, string[] | undefined]>([
    [
      'a caller outside rule.callers',
      context(WEB, ['orders:read']),
      { callers: ['spiffe://example.org/ns/batch/*'] },
      map,
      'caller_forbidden',
      'caller',
      'the calling service is not allowed on this route',
      undefined,
    ],
    [
      'a caller on a segment-boundary look-alike of rule.callers',
      context('spiffe://example.org/ns/batch-evil/sa/x', []),
      { callers: ['spiffe://example.org/ns/batch/*'] },
      undefined,
      'caller_forbidden',
      'caller',
      'the calling service is not allowed on this route',
      undefined,
    ],
    [
      'a caller matching no allowance',
      context('spiffe://example.org/ns/admin/sa/x', ['orders:read']),
      { scopes: ['orders:read'] },
      map,
      'caller_forbidden',
      'caller',
      'the calling service is not an allowed caller',
      undefined,
    ],
    [
      'a caller matching no allowance on a rule without scopes',
      context('other-client', []),
      {},
      map,
      'caller_forbidden',
      'caller',
      'the calling service is not an allowed caller',
      undefined,
    ],
    [
      'a service token lacking a scope',
      context(BATCH, ['orders:read']),
      { scopes: ['orders:read', 'orders:export'], anyScopes: ['x', 'y'] },
      map,
      'insufficient_scope',
      'caller',
      'the token lacks a required scope',
      ['orders:read', 'orders:export', 'x', 'y'],
    ],
    [
      'a user token lacking a scope',
      context(BATCH, ['orders:export'], 'alice'),
      { scopes: ['orders:read'] },
      map,
      'insufficient_scope',
      'user',
      'the user has not granted a required scope',
      ['orders:read'],
    ],
    [
      'a service token with none of anyScopes',
      context(BATCH, ['orders:read']),
      { scopes: ['orders:read'], anyScopes: ['orders:export', 'orders:write'] },
      map,
      'insufficient_scope',
      'caller',
      'the token has none of the accepted scopes',
      ['orders:export', 'orders:write'],
    ],
    [
      'a user token with none of anyScopes',
      context(BATCH, [], 'alice'),
      { anyScopes: ['orders:export'] },
      undefined,
      'insufficient_scope',
      'user',
      'the user has not granted any of the accepted scopes',
      ['orders:export'],
    ],
    [
      'a required scope beyond the exact allowance although a prefix would allow it',
      context(WEB, ['orders:write'], 'alice'),
      { scopes: ['orders:write'] },
      map,
      'caller_scope_exceeded',
      'caller',
      "a required scope is beyond the calling service's allowance",
      ['orders:write'],
    ],
    [
      'a user grant broader than the caller allowance',
      context(BATCH, ['orders:read', 'orders:write'], 'alice'),
      { scopes: ['orders:read', 'orders:write'] },
      map,
      'caller_scope_exceeded',
      'caller',
      "a required scope is beyond the calling service's allowance",
      ['orders:read', 'orders:write'],
    ],
    [
      'anyScopes granted only outside the allowance',
      context(BATCH, ['orders:write', 'profile']),
      { anyScopes: ['orders:write', 'orders:export', 'profile'] },
      map,
      'caller_scope_exceeded',
      'caller',
      "a required scope is beyond the calling service's allowance",
      ['orders:write', 'orders:export', 'profile'],
    ],
    [
      'a service-only call on a route that requires a user',
      context(BATCH, ['orders:read']),
      { scopes: ['orders:read'], onBehalfOf: 'required' },
      map,
      'on_behalf_of_required',
      'user',
      'this route requires a call on behalf of a user',
      undefined,
    ],
    [
      'a user call on a service-only route',
      context(BATCH, ['orders:read'], 'alice'),
      { scopes: ['orders:read'], onBehalfOf: 'forbidden' },
      map,
      'on_behalf_of_forbidden',
      'caller',
      'this route does not accept calls on behalf of a user',
      undefined,
    ],
  ])('refuses %s', (_case, auth, rule, callers, code, side, message, scope) => {
    const error = refusal(() => authorize(auth, compileRule(rule), callers))
    expect(error.code).toBe(code)
    expect(error.status).toBe(403)
    expect(error.side).toBe(side)
    expect(error.message).toBe(message)
    expect(error.scope).toEqual(scope)
  })

  it.each<[string, AuthContext, AuthRule, AuthErrorCode]>([
    ['rule.callers before the allowance map', context('spiffe://other.org/ns/x', []), { callers: [BATCH], scopes: ['a'] }, 'caller_forbidden'],
    ['the allowance map before scopes', context('spiffe://other.org/ns/x', []), { scopes: ['orders:read'], onBehalfOf: 'required' }, 'caller_forbidden'],
    ['scopes before the ceiling', context(WEB, ['orders:read'], 'alice'), { scopes: ['orders:read', 'orders:write'] }, 'insufficient_scope'],
    ['the ceiling before onBehalfOf', context(WEB, ['orders:write']), { scopes: ['orders:write'], onBehalfOf: 'required' }, 'caller_scope_exceeded'],
    ['scopes before onBehalfOf', context(BATCH, [], 'alice'), { scopes: ['orders:read'], onBehalfOf: 'forbidden' }, 'insufficient_scope'],
  ])('checks %s', (_case, auth, rule, code) => {
    expect(refusal(() => authorize(auth, compileRule(rule), map)).code).toBe(code)
  })
})
