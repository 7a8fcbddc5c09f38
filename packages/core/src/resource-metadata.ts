/**
 * OAuth 2.0 Protected Resource Metadata (RFC 9728): the document a client fetches to learn which
 * authorization servers issue tokens for this service, which scopes exist and which token
 * bindings are accepted. Derived from the guard's own options, so it cannot disagree with what
 * the guard enforces.
 */

import { checkKeys, fail, isPlainObject, optionKeys, parseSecureUrl, scopeList, stringList } from './internal/validate.js'

/** Options of `resourceMetadata`. */
export interface ResourceMetadataOptions {
  /** This service's resource identifier (RFC 9728 §2), an https URL such as `https://orders.example.com`. Usually the token audience. */
  resource: string
  /** `scopes_supported`. Default: the union of the `callers` allowances, if any. */
  scopesSupported?: string[]
  /**
   * `authorization_servers`. Default: every configured issuer that is an https URL (or http on
   * loopback), the issuer identifiers a client can discover (RFC 8414); self-issued signers'
   * `spiffe://` IDs and other non-URL issuers are left out, and the member is omitted when none is left.
   */
  authorizationServers?: string[]
  /** `resource_name`, human-readable. */
  resourceName?: string
  /** `resource_documentation`: a URL with documentation for developers. */
  resourceDocumentation?: string
}

export interface ResolvedResourceMetadata {
  /** Path the document is served at: `/.well-known/oauth-protected-resource` + the resource's path (§3.1). */
  path: string
  /** Absolute URL of the document, advertised as `resource_metadata` in every challenge (§5.1). */
  url: string
  /** The serialized document. */
  body: string
}

/** The metadata document members Callsign publishes. */
export interface ProtectedResourceMetadata {
  resource: string
  authorization_servers?: string[]
  scopes_supported?: string[]
  bearer_methods_supported: string[]
  dpop_signing_alg_values_supported?: string[]
  dpop_bound_access_tokens_required: boolean
  tls_client_certificate_bound_access_tokens: boolean
  resource_name?: string
  resource_documentation?: string
}

/** RFC 9728 §3.1: the well-known suffix is inserted between the host and the resource's path. */
export function metadataLocation(resource: URL): { path: string; url: string } {
  const suffix = resource.pathname === '/' ? '' : resource.pathname.replace(/\/$/, '')
  const path = `/.well-known/oauth-protected-resource${suffix}`
  return { path, url: `${resource.origin}${path}` }
}

/** What the guard enforces, which the document advertises unless the options say otherwise. */
export interface EnforcedSettings {
  issuers: string[]
  scopes: string[] | undefined
  dpopAlgs: string[] | undefined
  dpopRequired: boolean
}

const RESOURCE_METADATA_KEYS = optionKeys<ResourceMetadataOptions>()([
  'resource',
  'scopesSupported',
  'authorizationServers',
  'resourceName',
  'resourceDocumentation',
])

/** The `resourceMetadata` option, validated, as the document to serve. */
export function resolveResourceMetadata(value: unknown, enforced: EnforcedSettings): ResolvedResourceMetadata {
  if (!isPlainObject(value)) return fail('resourceMetadata', 'must be an object { resource, scopesSupported?, authorizationServers? }')
  checkKeys(value, RESOURCE_METADATA_KEYS, 'resourceMetadata')
  const resource = parseSecureUrl(value.resource, 'resourceMetadata.resource')
  if (resource.search) fail('resourceMetadata.resource', 'must not contain a query (RFC 9728 §2)')
  const options: ResourceMetadataOptions = { resource: value.resource as string }
  if (value.scopesSupported !== undefined) options.scopesSupported = scopeList(value.scopesSupported, 'resourceMetadata.scopesSupported')
  if (value.authorizationServers !== undefined) {
    options.authorizationServers = stringList(value.authorizationServers, 'resourceMetadata.authorizationServers')
    options.authorizationServers.forEach((server, i) => parseSecureUrl(server, `resourceMetadata.authorizationServers[${i}]`))
  }
  if (value.resourceName !== undefined) {
    if (typeof value.resourceName !== 'string') fail('resourceMetadata.resourceName', 'must be a string')
    options.resourceName = value.resourceName as string
  }
  if (value.resourceDocumentation !== undefined) {
    parseSecureUrl(value.resourceDocumentation, 'resourceMetadata.resourceDocumentation')
    options.resourceDocumentation = value.resourceDocumentation as string
  }
  return Object.freeze(buildResourceMetadata(resource, options, enforced))
}

/** RFC 9728 §2: an issuer identifier a client can look up (RFC 8414), as `parseSecureUrl` accepts them. */
function isDiscoverableIssuer(issuer: string): boolean {
  try {
    parseSecureUrl(issuer, 'issuer')
    return true
  } catch {
    return false
  }
}

/** Build the document from the guard's enforcement settings. */
export function buildResourceMetadata(resource: URL, options: ResourceMetadataOptions, enforced: EnforcedSettings): ResolvedResourceMetadata {
  const servers = options.authorizationServers ?? enforced.issuers.filter(isDiscoverableIssuer)
  const document: ProtectedResourceMetadata = {
    resource: options.resource,
    // An explicit list is published as given; the default is omitted when no issuer is discoverable.
    ...(options.authorizationServers !== undefined || servers.length > 0 ? { authorization_servers: servers } : {}),
    bearer_methods_supported: ['header'],
    dpop_bound_access_tokens_required: enforced.dpopRequired,
    tls_client_certificate_bound_access_tokens: true,
  }
  const scopes = options.scopesSupported ?? enforced.scopes
  if (scopes && scopes.length > 0) document.scopes_supported = scopes
  if (enforced.dpopAlgs) document.dpop_signing_alg_values_supported = enforced.dpopAlgs
  if (options.resourceName !== undefined) document.resource_name = options.resourceName
  if (options.resourceDocumentation !== undefined) document.resource_documentation = options.resourceDocumentation
  const { path, url } = metadataLocation(resource)
  return { path, url, body: JSON.stringify(document) }
}
