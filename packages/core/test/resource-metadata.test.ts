import { describe, expect, it } from 'vitest'
import { buildResourceMetadata, type EnforcedSettings } from '../src/resource-metadata.js'

const RESOURCE = 'https://orders.example.com'
const enforced = (issuers: string[]): EnforcedSettings => ({ issuers, scopes: undefined, dpopAlgs: undefined, dpopRequired: false })
const documentOf = (issuers: string[], authorizationServers?: string[]): Record<string, unknown> =>
  JSON.parse(
    buildResourceMetadata(new URL(RESOURCE), { resource: RESOURCE, ...(authorizationServers ? { authorizationServers } : {}) }, enforced(issuers)).body,
  ) as Record<string, unknown>

describe('buildResourceMetadata: authorization_servers (RFC 9728 §2)', () => {
  it('lists by default the https issuers and loopback http ones, not SPIFFE IDs, URNs or http elsewhere', () => {
    const issuers = [
      'https://auth.example.com/',
      'spiffe://example.org/ns/batch/sa/worker',
      'http://127.0.0.1:8080/',
      'urn:example:signer',
      'http://auth.example.com/',
    ]
    expect(documentOf(issuers).authorization_servers).toEqual(['https://auth.example.com/', 'http://127.0.0.1:8080/'])
  })

  it('omits the member when no issuer is discoverable, and keeps the members in their order otherwise', () => {
    expect(documentOf(['spiffe://example.org/ns/batch/sa/worker'])).not.toHaveProperty('authorization_servers')
    expect(Object.keys(documentOf(['https://auth.example.com/'])).slice(0, 2)).toEqual(['resource', 'authorization_servers'])
  })

  it('publishes an explicit list as given, an empty one included', () => {
    expect(documentOf(['spiffe://example.org/a'], ['https://as.example.com']).authorization_servers).toEqual(['https://as.example.com'])
    expect(documentOf(['https://auth.example.com/'], []).authorization_servers).toEqual([])
  })
})
