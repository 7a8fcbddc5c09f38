/**
 * @callsign/client: the calling service's half of Callsign — its workload certificate, cached
 * client-credentials and token-exchange tokens, DPoP proofs, and a check of who answered.
 */
export type * from './contracts.js'
export * from './errors.js'
export type * from './events.js'
export { resolveTokenOptions, TOKEN_OPTION_KEYS, DPOP_ALGORITHMS } from './token-options.js'
export type { ClientTokenOptions, ClientAuthMethod, DpopOption, PrivateKeyInput, TokenOptions } from './token-options.js'
export { createDpopKey } from './dpop-key.js'
export { createTokenSource, type TokenSourceSettings } from './tokens.js'
export type { TokenIdentity, IdentityMaterial } from './authorization-server.js'

// The call side's building blocks (createClient joins them with the token side).
export { DEFAULT_MAX_CONNECTIONS, resolveServices, type ServiceOptions, type ResolvedService } from './service-options.js'
export { createConnections, type Connections, type ConnectionsSettings, type IdentitySource } from './connections.js'
export {
  createServiceClient,
  type ServiceClient,
  type ServiceClientSettings,
  type ServiceRequestInit,
  type ServiceHeadersRequest,
  type ServiceHeaders,
} from './service.js'
export { parseChallenges } from './challenge.js'

// The client.
export { createClient, type ClientOptions, type CallsignClient } from './client.js'
