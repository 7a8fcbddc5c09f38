/**
 * `@callsign/testing`: a test kit for Callsign users and for Callsign's own
 * tests. Throwaway CA and SPIFFE workload certificates, a loopback
 * authorization-server stand-in that serves metadata and a JWKS, signs
 * (optionally DPoP- or certificate-bound) access tokens and can run a real
 * token endpoint (client credentials, token exchange), DPoP proofs
 * (RFC 9449) and RFC 8693 actor chains.
 *
 * @example
 * ```ts
 * import { actorChain, createDpopKey, createDpopProof, createTestCa, startTestIssuer } from '@callsign/testing';
 * ```
 *
 * @packageDocumentation
 */
export { createTestCa } from './ca.js'
export type { CertificateKeyUsage, CertificateOptions, CrlOptions, IssuedCertificate, TestCa, TestCaOptions } from './ca.js'
export type { CertificateValidity } from './validity.js'
export { startTestIssuer } from './issuer.js'
export type { RecordedRequest, TestIssuer, TestIssuerOptions } from './issuer.js'
export { TEST_ISSUER_ALGORITHMS } from './issuer-keys.js'
export type { TestIssuerAlgorithm } from './issuer-keys.js'
export type { DiscoveryMode } from './issuer-metadata.js'
export type { OutageMode } from './issuer-outage.js'
export type { SignOptions } from './sign-access-token.js'
export type { TestClient, TestClientAuth, TokenEndpointOptions } from './token-endpoint-options.js'
export type { TokenRequestRecord } from './token-endpoint.js'
export { createDpopKey, createDpopProof } from './dpop.js'
export type { DpopKey, DpopProofOptions } from './dpop.js'
export { actorChain } from './actor-chain.js'
export { xfccElement, xfccHeader, nginxEscapedCert, certificateHash } from './xfcc.js'
export type { XfccElementOptions } from './xfcc.js'
export { startForwardingProxy } from './forwarding-proxy.js'
export type { ForwardedRequest, ForwardingProxy, ForwardingProxyOptions } from './forwarding-proxy.js'
