/**
 * @callsign/client: the calling service's half of Callsign — its workload certificate, cached
 * client-credentials and token-exchange tokens, DPoP proofs, and a check of who answered.
 */
export type * from './contracts.js'
export * from './errors.js'
export type * from './events.js'
