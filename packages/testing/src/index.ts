/**
 * `@callsign/testing`: a test kit for Callsign users and for Callsign's own
 * tests. Throwaway CA and SPIFFE workload certificates, and a loopback
 * authorization-server stand-in that serves metadata and a JWKS and signs
 * access tokens.
 *
 * @example
 * ```ts
 * import { createTestCa, startTestIssuer } from '@callsign/testing';
 * ```
 *
 * @packageDocumentation
 */
export { createTestCa } from './ca.js';
export type { CertificateOptions, IssuedCertificate, TestCa, TestCaOptions } from './ca.js';
export type { CertificateValidity } from './validity.js';
export { startTestIssuer } from './issuer.js';
export type { RecordedRequest, TestIssuer, TestIssuerOptions } from './issuer.js';
export { TEST_ISSUER_ALGORITHMS } from './issuer-keys.js';
export type { TestIssuerAlgorithm } from './issuer-keys.js';
export type { DiscoveryMode } from './issuer-metadata.js';
export type { OutageMode } from './issuer-outage.js';
export type { SignOptions } from './sign-access-token.js';
