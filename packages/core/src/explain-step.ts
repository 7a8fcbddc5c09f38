import type { AuthError } from './errors.js'

/** Which check of the explanation a refusal belongs to, from its code and fixed message. */
export function stepOf(error: AuthError): string {
  const m = error.message
  switch (error.code) {
    case 'mtls_required':
    case 'peer_unauthorized':
      return 'client certificate'
    case 'credentials_missing':
    case 'invalid_request':
      return 'credentials'
    case 'keys_unavailable':
    case 'introspection_unavailable':
    case 'revocation_unavailable':
      return 'signature'
    case 'invalid_dpop_proof':
    case 'use_dpop_nonce':
    case 'replay_store_unavailable':
      return 'binding'
    case 'insufficient_scope':
    case 'caller_forbidden':
    case 'caller_scope_exceeded':
    case 'on_behalf_of_required':
    case 'on_behalf_of_forbidden':
      return /delegation|may_act/.test(m) ? 'delegation' : 'rule'
    default:
      if (/issuer/.test(m)) return 'issuer'
      if (/audience/.test(m)) return 'audience'
      if (/expired|not yet valid|future|too old|expiry|iat|nbf/.test(m)) return 'time'
      if (/signature|key/.test(m) && !/DPoP|bound|certificate/.test(m)) return 'signature'
      if (/type|algorithm|malformed token|encrypted|crit/.test(m)) return 'header'
      if (/bound|DPoP|sender-constrained|certificate/.test(m)) return 'binding'
      if (/another service/.test(m)) return 'caller'
      if (/delegation|act claim/.test(m)) return 'delegation'
      return 'claims'
  }
}
