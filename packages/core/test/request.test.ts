import { describe, expect, it } from 'vitest'
import { expectedHtu } from '../src/binding.js'
import { resolveConfig } from '../src/options.js'
import { requestPath, type AuthRequest } from '../src/request.js'

const ISSUERS = { issuer: 'https://auth.example.com/', audience: 'orders' }
const config = resolveConfig({ issuers: ISSUERS, logger: { warn() {} } })
const pinned = resolveConfig({ issuers: ISSUERS, dpop: { origin: 'https://orders.example.com' }, logger: { warn() {} } })

/** A request inside a mount at `/v1`: the adapter handed core the target the client sent as `originalUrl`. */
const mounted = (extra: Partial<AuthRequest> = {}): AuthRequest => ({
  method: 'GET',
  url: '/whoami?page=2',
  originalUrl: '/v1/whoami?page=2',
  headers: { host: 'orders.example.com' },
  socket: { encrypted: true },
  ...extra,
})

describe('requestPath', () => {
  it('prefers the target the client sent (originalUrl) to the path a mount left in url', () => {
    expect(requestPath(mounted())).toBe('/v1/whoami')
  })

  it('reads url when no adapter or framework set originalUrl', () => {
    expect(requestPath({ url: '/v1/whoami?x=1', headers: {} })).toBe('/v1/whoami')
  })

  it('is empty without a target', () => {
    expect(requestPath({ headers: {} })).toBe('')
  })
})

describe('expectedHtu', () => {
  it('is built from the original target, not the stripped url', () => {
    expect(expectedHtu(mounted(), config)).toBe('https://orders.example.com/v1/whoami')
  })

  it('keeps the original target with a configured dpop.origin', () => {
    expect(expectedHtu(mounted({ headers: { host: '10.0.0.7:8080' }, socket: { encrypted: false } }), pinned)).toBe('https://orders.example.com/v1/whoami')
  })

  it('uses url when there is no originalUrl', () => {
    expect(expectedHtu(mounted({ originalUrl: undefined }), config)).toBe('https://orders.example.com/whoami')
  })
})
