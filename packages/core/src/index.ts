/**
 * @callsign/core: which service is calling, on whose behalf, and whether both may do this.
 * Framework-free; adapters (`@callsign/express`, `@callsign/fastify`, `@callsign/koa`) wrap it.
 */

// The guard and its rules: create one per application, check requests, authorize routes.
export { createCallsign, type Callsign } from './guard.js'
export { compileRule, type AuthRule, type CompiledRule } from './policy.js'
export {
  SUPPORTED_ALGORITHMS,
  DEFAULT_ALGORITHMS,
  type Algorithm,
  type CallsignOptions,
  type IssuerOptions,
  type MtlsMode,
  type MtlsOptions,
  type JwksOptions,
  type Logger,
  type ScopeClaim,
  type TokenTypeMode,
  type ResolvedConfig,
  type DpopMode,
  type DpopOptions,
  type DelegationOptions,
  type ForwardedOptions,
  type IntrospectionOptions,
} from './options.js'
export { createClientIdentity, type ClientIdentity, type ClientIdentityMaterial, type ClientTlsOptions } from './client-identity.js'
export type { ResourceMetadataOptions, ProtectedResourceMetadata } from './resource-metadata.js'
export type { AuthContext, TokenAuthContext, CertificateAuthContext, CallerIdentity, TokenBinding } from './principal.js'
export { presentedToken, type PresentedToken } from './principal.js'
export type { AuthFor, UserAuthContext, ServiceAuthContext } from './principal.js'
export type { AccessTokenClaims, ActorClaim } from './access-token.js'
export { AuthError, type AuthCheck, type AuthErrorCode, type AuthSide } from './errors.js'
export { MemoryReplayStore, type ReplayStore, type RevocationStore, type MemoryReplayStoreOptions } from './replay-store.js'
export { revocationKey, type RevocableToken } from './revocation.js'
export { logDecisions, type DecisionEvent, type DecisionHook, type LevelLogger } from './decision-events.js'
export { explain, type ExplainInput, type Explanation, type ExplainStep } from './explain.js'

// The adapter kit: what a framework adapter calls (see the Express, Fastify and Koa packages).
export { afterCheck, authorizeRequest, authorizeRoute, promisedAuth, responseHeaders, type PromisedAuthUsage } from './decisions.js'
export { toHttpResponse, toProblem, problemType, applyChallenge, type ChallengeContext, type HttpErrorResponse, type ProblemDocument } from './http-mapping.js'
export type { AuthRequest, PeerSocket } from './request.js'
export { metadataLocation } from './resource-metadata.js'
export { checkServerMtls } from './mtls.js'

// Building blocks: the single checks the guard runs, for tools and tests.
export { readPeerCertificate, describeCertificate, type PeerCertificate, type PeerState } from './peer-certificate.js'
export type { PeerVerification } from './forwarded-certificate.js'
export { algorithmSpec, type AlgorithmSpec } from './algorithms.js'
export { parseSpiffeId, compileCallerPattern, spiffeIdOfCertificate, type SpiffeId, type CallerPattern } from './spiffe.js'
export { readCredentials, type Credentials } from './credentials.js'
export { verifyDpopProof, normalizeHtu, type DpopExpectation, type DpopCheckConfig } from './dpop.js'

// Server TLS: the mTLS listener's options, with rotation, CRLs and per-domain trust bundles.
export {
  createServerTlsOptions,
  type ServerTlsOptions,
  type ServerTlsBundle,
  type ServerTlsReloadEvent,
  type CertificateExpiryEvent,
  type FileRef,
  type TlsMaterial,
  type TrustDomainBundles,
} from './server-tls.js'
export type { TrustBundleSource } from './trust-bundles.js'
