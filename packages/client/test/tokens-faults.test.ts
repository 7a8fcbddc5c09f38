// The token side when the authorization server fails: down at start, slow, answering garbage or
// 5xx. The failing server is test/support/faults.ts's scripted loopback server (metadata that
// points at itself, then a chosen failure at its token endpoint); no assertion depends on time:
// a timeout is recognised by the error's reason, backoff by request counts on an injected clock.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AuthorizationServerUnavailableError,
  createDpopKey,
  createTokenSource,
  type DpopKey,
  resolveTokenOptions,
  type ClientEvent,
  type TokenRequest,
  type TokenSource,
} from '@callsign/client'
import { startScriptedServer, type ScriptedServer } from '../../../test/support/faults.js'

const ORDERS: TokenRequest = { service: 'orders', resource: 'https://orders.example.org', scopes: ['orders:read'] }
const METADATA = '/.well-known/oauth-authorization-server'

describe('token side: authorization server faults', () => {
  let as: ScriptedServer
  const sources: TokenSource[] = []
  const source = (issuer: string, extra: { timeout?: number; now?: () => number; emit?: (event: ClientEvent) => void; dpop?: DpopKey } = {}): TokenSource => {
    const tokens = createTokenSource({
      options: resolveTokenOptions({ issuer, clientId: 'c', auth: 'client_secret_basic', clientSecret: 's', timeout: extra.timeout ?? 5000 }),
      identity: undefined,
      dpop: extra.dpop,
      emit: extra.emit ?? (() => {}),
      ...(extra.now ? { now: extra.now } : {}),
    })
    sources.push(tokens)
    return tokens
  }
  const unavailable = async (tokens: TokenSource): Promise<AuthorizationServerUnavailableError> => {
    const error = await tokens.get(ORDERS).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(AuthorizationServerUnavailableError)
    return error as AuthorizationServerUnavailableError
  }

  beforeAll(async () => {
    as = await startScriptedServer()
    as.script(METADATA, { json: { issuer: as.origin, token_endpoint: as.url('/token') } })
  })
  afterAll(async () => {
    await Promise.all(sources.map((tokens) => tokens.close()))
    await as.close()
  })

  it('down at start: unavailable (network), at once', async () => {
    const closed = createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as AddressInfo).port
    await new Promise<void>((resolve) => closed.close(() => resolve()))
    const error = await unavailable(source(`http://127.0.0.1:${port}`))
    expect(error).toMatchObject({ code: 'authorization_server_unavailable', reason: 'network', service: 'orders' })
  })

  it('slow token endpoint: unavailable (timeout) after the timeout option, no hang', async () => {
    as.script('/token', { hang: true })
    const error = await unavailable(source(as.origin, { timeout: 200 }))
    expect(error.reason).toBe('timeout')
  })

  it('slow discovery: unavailable (timeout)', async () => {
    const slow = await startScriptedServer()
    try {
      slow.script(METADATA, { hang: true })
      expect((await unavailable(source(slow.origin, { timeout: 200 }))).reason).toBe('timeout')
    } finally {
      await slow.close()
    }
  })

  it('a body cut in the middle: unavailable, no hang', async () => {
    as.script('/token', { hangMidBody: { access_token: 'x'.repeat(64), token_type: 'Bearer', expires_in: 60 } })
    expect((await unavailable(source(as.origin, { timeout: 200 }))).reason).toBe('timeout')
  })

  const garbage: Array<[string, string, Parameters<ScriptedServer['script']>[1], number | undefined]> = [
    ['not JSON', 'invalid_response', { body: '<html>hello</html>' }, undefined],
    ['a JSON array', 'invalid_response', { json: [1, 2] }, undefined],
    ['no access_token', 'invalid_response', { json: { token_type: 'Bearer' } }, undefined],
    ['an unknown token_type', 'invalid_response', { json: { access_token: 'abc', token_type: 'MAC' } }, undefined],
    ['503', 'http_status', { body: 'down for maintenance', status: 503, headers: { 'content-type': 'text/plain' } }, 503],
    ['500 with an OAuth error body', 'http_status', { json: { error: 'server_error' }, status: 500 }, 500],
  ]
  it.each(garbage)('answering %s: unavailable (%s)', async (_what, reason, script, status) => {
    as.script('/token', script)
    const error = await unavailable(source(as.origin))
    expect(error.reason).toBe(reason)
    expect(error.status).toBe(status)
    expect(error.message).not.toContain('abc')
  })

  it('an OAuth error at 400 is the server refusing, with its description', async () => {
    as.script('/token', { json: { error: 'invalid_target', error_description: 'unknown resource' }, status: 400 })
    const error = await source(as.origin)
      .get(ORDERS)
      .catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'authorization_server_refused', error: 'invalid_target', errorDescription: 'unknown resource', status: 400 })
  })

  it('no request storm: after a failure, calls get the last error at once until the backoff ends', async () => {
    let time = Date.now()
    const events: ClientEvent[] = []
    as.script('/token', { body: 'oops', status: 502, headers: { 'content-type': 'text/plain' } })
    const tokens = source(as.origin, { now: () => time, emit: (event) => events.push(event) })
    const before = as.requestCount('/token')
    const first = await unavailable(tokens)
    const errors = await Promise.all(Array.from({ length: 200 }, () => tokens.get(ORDERS).catch((e: unknown) => e)))
    expect(new Set(errors)).toEqual(new Set([first]))
    expect(as.requestCount('/token') - before).toBe(1)
    expect(events.filter((event) => event.type === 'token_failure')).toHaveLength(1)
    // Backoff 1 s ±20%, then 2 s ±20%: one request each time it ends.
    time += 1200
    await unavailable(tokens)
    expect(as.requestCount('/token') - before).toBe(2)
    time += 1500
    await unavailable(tokens)
    expect(as.requestCount('/token') - before).toBe(2)
    time += 1000
    as.script('/token', { json: { access_token: 'recovered-token', token_type: 'Bearer', expires_in: 60 } })
    expect((await tokens.get(ORDERS)).value).toBe('recovered-token')
    expect(as.requestCount('/token') - before).toBe(3)
  })

  it('metadata is fetched once and falls back to OpenID discovery', async () => {
    const openid = await startScriptedServer()
    try {
      openid.script('/.well-known/openid-configuration', { json: { issuer: openid.origin, token_endpoint: openid.url('/token') } })
      openid.script('/token', { json: { access_token: 'from-openid', token_type: 'Bearer', expires_in: 60 } })
      const tokens = source(openid.origin)
      expect((await tokens.get(ORDERS)).value).toBe('from-openid')
      await tokens.get({ ...ORDERS, resource: 'https://billing.example.org' })
      expect(openid.requestCount(METADATA)).toBe(1)
      expect(openid.requestCount('/.well-known/openid-configuration')).toBe(1)
      expect(openid.requestCount('/token')).toBe(2)
    } finally {
      await openid.close()
    }
  })

  it('metadata of another issuer is refused (RFC 8414 §3.3)', async () => {
    const other = await startScriptedServer()
    try {
      other.script(METADATA, { json: { issuer: 'http://127.0.0.1:1', token_endpoint: other.url('/token') } })
      expect((await unavailable(source(other.origin))).reason).toBe('invalid_response')
      expect(other.requestCount('/token')).toBe(0)
    } finally {
      await other.close()
    }
  })

  it('DPoP: a server that keeps asking for a nonce gets exactly one retry', async () => {
    as.script('/token', { json: { error: 'use_dpop_nonce' }, status: 400, headers: { 'dpop-nonce': 'n-1' } })
    const events: ClientEvent[] = []
    const before = as.requestCount('/token')
    const error = await source(as.origin, { dpop: await createDpopKey(true), emit: (event) => events.push(event) })
      .get(ORDERS)
      .catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'authorization_server_refused', error: 'use_dpop_nonce' })
    expect(as.requestCount('/token') - before).toBe(2)
    expect(events.map((event) => event.type)).toEqual(['retry', 'token_failure'])
  })

  it('DPoP: a Bearer token answered to a DPoP request is refused (the binding would be lost)', async () => {
    as.script('/token', { json: { access_token: 'unbound', token_type: 'Bearer', expires_in: 60 } })
    const error = await unavailable(source(as.origin, { dpop: await createDpopKey(true) }))
    expect(error.reason).toBe('invalid_response')
  })
})
