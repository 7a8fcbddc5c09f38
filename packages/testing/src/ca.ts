import { createHash, KeyObject, webcrypto } from 'node:crypto'
import { normalizeSerialNumber, signCrl } from './crl.js'
import { checkOptions, optionNames } from './options.js'
import { toPem } from './pem.js'
import { randomSerialNumber } from './serial-number.js'
import { validityWindow, type CertificateValidity } from './validity.js'
import { x509 } from './x509-provider.js'

/**
 * Options for a certificate issued by a {@link TestCa}.
 *
 * Every field is optional; the defaults produce a valid ECDSA P-256 client
 * certificate with a common name of `'workload'` and no SAN.
 *
 * @example
 * ```ts
 * const options: CertificateOptions = {
 *   spiffeId: 'spiffe://example.org/ns/web/sa/frontend',
 *   validity: 'expired',
 * };
 * ```
 */
export interface CertificateOptions {
  /** SPIFFE ID added as a URI SAN (first URI SAN). Default: none. */
  spiffeId?: string
  /**
   * Extra URI SANs, written verbatim after `spiffeId` (e.g. a second SPIFFE
   * ID or a malformed one). Default: none.
   */
  uris?: string[]
  /** DNS SANs. Default: none (`['localhost']` for server certificates). */
  dnsNames?: string[]
  /**
   * IP address SANs (IPv4 or IPv6 text form). Default: none
   * (`['127.0.0.1', '::1']` for server certificates).
   */
  ipAddresses?: string[]
  /**
   * Subject common name. Default: `spiffeId` if set (truncated to 64
   * characters), otherwise the first DNS name for server certificates,
   * otherwise `'workload'`.
   */
  commonName?: string
  /**
   * Named validity window. Default `'valid'` (notBefore now − 1 h, notAfter
   * now + 24 h); `'expired'` ended one day ago; `'not-yet-valid'` starts in one day.
   */
  validity?: CertificateValidity
  /** Explicit start of validity; overrides the one from `validity`. */
  notBefore?: Date
  /** Explicit end of validity; overrides the one from `validity`. */
  notAfter?: Date
  /**
   * Extended key usage: `'client'` (clientAuth), `'server'` (serverAuth) or
   * `'both'`. Default `'client'` for {@link TestCa.issueCertificate},
   * `'server'` for {@link TestCa.issueServerCertificate}.
   */
  usage?: 'client' | 'server' | 'both'
  /**
   * Write basicConstraints `cA:TRUE` (critical) on this certificate. It is
   * still an end-entity certificate of this CA in every other respect: for
   * negative tests of verifiers that must refuse a CA certificate as a
   * workload identity (SPIFFE X509-SVID §4.3). Default `false`.
   */
  isCa?: boolean
  /**
   * Key usage bits (RFC 5280 §4.2.1.3, a critical extension) instead of the
   * default `['digitalSignature', 'keyAgreement']`. `[]` leaves the keyUsage
   * extension out. E.g. `['digitalSignature', 'keyCertSign']` for a leaf that
   * may sign certificates (X509-SVID §4.3 forbids it).
   */
  keyUsages?: ReadonlyArray<CertificateKeyUsage>
}

/** A key usage bit name of RFC 5280 §4.2.1.3, as {@link CertificateOptions.keyUsages} takes it. */
export type CertificateKeyUsage =
  'digitalSignature' | 'nonRepudiation' | 'keyEncipherment' | 'dataEncipherment' | 'keyAgreement' | 'keyCertSign' | 'cRLSign' | 'encipherOnly' | 'decipherOnly'

/**
 * Options for {@link TestCa.issueCrl}.
 *
 * @example
 * ```ts
 * const options: CrlOptions = { revoked: [stolen], nextUpdate: new Date(Date.now() + 3600_000) };
 * ```
 */
export interface CrlOptions {
  /**
   * Revoked certificates: certificates issued by this CA, or their serial
   * numbers as hexadecimal strings (either case, `:` separators allowed, as
   * {@link IssuedCertificate.serialNumber} or Node's
   * `X509Certificate.serialNumber` print them). Default: none (an empty CRL,
   * which still tells a verifier that nothing of this CA is revoked).
   */
  revoked?: ReadonlyArray<IssuedCertificate | string>
  /** `thisUpdate` of the CRL, also each entry's revocation date. Default: one hour ago. */
  thisUpdate?: Date
  /**
   * `nextUpdate` of the CRL. Default: 24 hours from now. A CRL past its
   * `nextUpdate` makes OpenSSL (and so Node) refuse every client certificate
   * of this CA with `CRL_HAS_EXPIRED`.
   */
  nextUpdate?: Date
}

/**
 * A certificate and private key issued by a {@link TestCa}, in the forms
 * Node's `tls`/`https` options and Callsign's configuration expect.
 *
 * @example
 * ```ts
 * const svid = await ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' });
 * https.request({ cert: svid.certPem, key: svid.keyPem, ca: ca.certPem, ... });
 * ```
 */
export interface IssuedCertificate {
  /** The leaf certificate, PEM encoded. */
  certPem: string
  /** The leaf's ECDSA P-256 private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). */
  keyPem: string
  /**
   * The leaf certificate followed by the CA certificate, PEM encoded (for an
   * intermediate CA: the leaf, the intermediate, then its issuers up to the root).
   */
  chainPem: string
  /**
   * base64url(SHA-256(DER of the leaf)), i.e. the value of the
   * `cnf["x5t#S256"]` confirmation claim of RFC 8705.
   */
  x5tS256: string
  /** The SPIFFE ID written as URI SAN, when one was requested. */
  spiffeId?: string
  /** Serial number, lower-case hexadecimal. */
  serialNumber: string
}

/**
 * A throwaway certificate authority for tests.
 *
 * @example
 * ```ts
 * const ca = await createTestCa();
 * const client = await ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' });
 * const server = await ca.issueServerCertificate();
 * ```
 */
export interface TestCa {
  /**
   * The CA certificate, PEM encoded: the self-signed root (use as `ca` in TLS
   * options), or the intermediate when created with {@link TestCaOptions.issuer}.
   */
  certPem: string
  /** This CA's certificate followed by its issuers' up to the root (just `certPem` for a root). */
  chainPem: string
  /** The CA's ECDSA P-256 private key, PKCS#8 PEM. */
  keyPem: string
  /** The CA's common name. */
  name: string
  /**
   * Issues a leaf certificate (default usage `'client'`).
   *
   * @param options - See {@link CertificateOptions}; defaults apply per field.
   * @returns The issued certificate and key.
   * @example
   * ```ts
   * const expired = await ca.issueCertificate({ spiffeId: 'spiffe://example.org/x', validity: 'expired' });
   * ```
   */
  issueCertificate(options?: CertificateOptions): Promise<IssuedCertificate>
  /**
   * Issues a server certificate: same as {@link TestCa.issueCertificate} but with
   * defaults `dnsNames: ['localhost']`, `ipAddresses: ['127.0.0.1', '::1']` and
   * `usage: 'server'`.
   *
   * @param options - See {@link CertificateOptions}; each given field replaces its default.
   * @returns The issued certificate and key.
   * @example
   * ```ts
   * const server = await ca.issueServerCertificate();
   * https.createServer({ cert: server.certPem, key: server.keyPem, ca: [ca.certPem], requestCert: true });
   * ```
   */
  issueServerCertificate(options?: CertificateOptions): Promise<IssuedCertificate>
  /**
   * Issues an X.509 v2 certificate revocation list (RFC 5280 §5) signed by
   * this CA (ECDSA P-256 with SHA-256): issuer = the CA's subject, the
   * `authorityKeyIdentifier` and `cRLNumber` extensions (§5.2.1, §5.2.3;
   * the number grows by one with each CRL of this CA) and one entry per
   * revoked serial number, without reason codes. Delta CRLs, distribution
   * points and indirect CRLs are not produced.
   *
   * @param options - See {@link CrlOptions}; default an empty CRL valid from one hour ago for 24 hours.
   * @returns The CRL, PEM encoded (`-----BEGIN X509 CRL-----`), usable as
   *   the `crl` option of Node's `tls`/`https` servers.
   * @throws TypeError if a serial number is not hexadecimal or is listed twice.
   * @example
   * ```ts
   * const stolen = await ca.issueCertificate({ spiffeId });
   * const crl = await ca.issueCrl({ revoked: [stolen] });
   * https.createServer({ cert, key, ca: [ca.certPem], crl, requestCert: true, rejectUnauthorized: false });
   * // a handshake with `stolen` ends with socket.authorizationError === 'CERT_REVOKED'
   * ```
   */
  issueCrl(options?: CrlOptions): Promise<string>
}

/**
 * Options for {@link createTestCa}.
 *
 * @example
 * ```ts
 * const ca = await createTestCa({ commonName: 'Other Test CA' });
 * ```
 */
export interface TestCaOptions {
  /** Common name of the CA. Default `'Callsign Test CA <random hex>'`. */
  commonName?: string
  /**
   * Make an intermediate CA issued by this CA instead of a self-signed root
   * (same extensions, plus an authority key identifier). Clients present
   * `issued.chainPem` so the server, trusting the root, can build the path.
   * Default: none (a root).
   */
  issuer?: TestCa
}

const EC_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
const CA_VALIDITY_MS = 10 * 365 * 24 * 60 * 60 * 1000
const MAX_COMMON_NAME = 64

const CERTIFICATE_OPTIONS = optionNames<CertificateOptions>()([
  'spiffeId',
  'uris',
  'dnsNames',
  'ipAddresses',
  'commonName',
  'validity',
  'notBefore',
  'notAfter',
  'usage',
  'isCa',
  'keyUsages',
])
const CRL_OPTIONS = optionNames<CrlOptions>()(['revoked', 'thisUpdate', 'nextUpdate'])
const CA_OPTIONS = optionNames<TestCaOptions>()(['commonName', 'issuer'])

/** A CA's certificate and keys, which its leaves and CRLs are signed with. */
interface Authority {
  cert: x509.X509Certificate
  keys: webcrypto.CryptoKeyPair
  certPem: string
  /** This CA's certificate followed by its issuers' up to the root. */
  chainPem: string
  keyPem: string
  /** The authorityKeyIdentifier extension of what this CA signs. */
  authorityKeyId: x509.AuthorityKeyIdentifierExtension
}

/** One leaf to issue: its options, and the defaults of the method asked for it. */
interface LeafRequest {
  options: CertificateOptions
  defaultUsage: 'client' | 'server'
  defaultCommonName: string | undefined
}

/** A subject alternative name as @peculiar/x509 takes it. */
type SubjectAltName = { type: 'url' | 'dns' | 'ip'; value: string }

/**
 * Creates a throwaway CA: ECDSA P-256, basicConstraints CA:true (critical),
 * keyUsage keyCertSign + cRLSign (critical), subject key identifier, random
 * 128-bit serial, valid from one hour ago for ten years. Self-signed (a root)
 * unless `options.issuer` is given (an intermediate of that CA).
 *
 * @param options - Optional common name (default `'Callsign Test CA <random hex>'`) and issuer.
 * @returns The CA, able to issue client and server certificates.
 * @example
 * ```ts
 * import { createTestCa } from '@callsign/testing';
 *
 * const ca = await createTestCa();
 * const svid = await ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' });
 * const intermediate = await createTestCa({ issuer: ca });
 * const viaIntermediate = await intermediate.issueCertificate({ spiffeId }); // present viaIntermediate.chainPem
 * ```
 */
export async function createTestCa(options: TestCaOptions = {}): Promise<TestCa> {
  checkOptions('createTestCa', options, CA_OPTIONS)
  const name = options.commonName ?? `Callsign Test CA ${randomSerialNumber().slice(0, 8)}`
  const authority = await createAuthority(name, options.issuer)
  const issueCrl = crlIssuer(authority)
  return {
    certPem: authority.certPem,
    chainPem: authority.chainPem,
    keyPem: authority.keyPem,
    name,
    issueCrl: (opts = {}) => issueCrl(opts),
    issueCertificate: (opts = {}) => issueLeaf(authority, { options: opts, defaultUsage: 'client', defaultCommonName: undefined }),
    issueServerCertificate: (opts = {}) => {
      const dnsNames = opts.dnsNames ?? ['localhost']
      const serverOptions = { ...opts, dnsNames, ipAddresses: opts.ipAddresses ?? ['127.0.0.1', '::1'] }
      return issueLeaf(authority, { options: serverOptions, defaultUsage: 'server', defaultCommonName: dnsNames[0] })
    },
  }
}

/** A fresh key pair and the CA certificate for it: self-signed, or an intermediate issued by `parent`. */
async function createAuthority(name: string, parent: TestCa | undefined): Promise<Authority> {
  const keys = await generateEcKeyPair()
  const now = Date.now()
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ski,
  ]
  const validity = { notBefore: new Date(now - 60 * 60 * 1000), notAfter: new Date(now + CA_VALIDITY_MS) }
  const cert = parent
    ? await issueIntermediate({ parent, name, publicKey: keys.publicKey, validity, extensions })
    : await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: randomSerialNumber(),
        name: [{ CN: [name] }],
        ...validity,
        keys,
        signingAlgorithm: EC_ALGORITHM,
        extensions,
      })
  const certPem = cert.toString('pem') + '\n'
  return {
    cert,
    keys,
    certPem,
    chainPem: certPem + (parent?.chainPem ?? ''),
    keyPem: await exportPrivateKeyPem(keys.privateKey),
    authorityKeyId: new x509.AuthorityKeyIdentifierExtension(ski.keyId),
  }
}

/** An intermediate CA certificate for `publicKey`, signed by `parent`'s key, naming it as issuer (with its key identifier). */
async function issueIntermediate(intermediate: {
  parent: TestCa
  name: string
  publicKey: webcrypto.CryptoKey
  validity: { notBefore: Date; notAfter: Date }
  extensions: x509.Extension[]
}): Promise<x509.X509Certificate> {
  const { parent, name, publicKey, validity, extensions } = intermediate
  const parentCert = new x509.X509Certificate(parent.certPem)
  const parentKey = await webcrypto.subtle.importKey(
    'pkcs8',
    new Uint8Array(Buffer.from(parent.keyPem.replace(/-----[^-]+-----|\s+/g, ''), 'base64')),
    EC_ALGORITHM,
    false,
    ['sign'],
  )
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerialNumber(),
    subject: [{ CN: [name] }],
    issuer: parentCert.subject,
    ...validity,
    publicKey,
    signingKey: parentKey,
    signingAlgorithm: EC_ALGORITHM,
    extensions: [...extensions, await x509.AuthorityKeyIdentifierExtension.create(parentCert.publicKey)],
  })
}

/** A leaf certificate and its fresh key, signed by the CA. */
async function issueLeaf(authority: Authority, request: LeafRequest): Promise<IssuedCertificate> {
  const { options, defaultUsage, defaultCommonName } = request
  checkOptions(defaultUsage === 'server' ? 'issueServerCertificate' : 'issueCertificate', options, CERTIFICATE_OPTIONS)
  const leafKeys = await generateEcKeyPair()
  const serialNumber = randomSerialNumber()
  const names = subjectAltNames(options)
  const usage = options.usage ?? defaultUsage
  const commonName = options.commonName ?? (options.spiffeId ?? defaultCommonName ?? 'workload').slice(0, MAX_COMMON_NAME)
  const extensions = await leafExtensions({ options, usage, names, publicKey: leafKeys.publicKey, authorityKeyId: authority.authorityKeyId })
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: [{ CN: [commonName] }],
    issuer: authority.cert.subject,
    ...validityWindow(options.validity, { notBefore: options.notBefore, notAfter: options.notAfter }),
    publicKey: leafKeys.publicKey,
    signingKey: authority.keys.privateKey,
    signingAlgorithm: EC_ALGORITHM,
    extensions,
  })
  const leafPem = leaf.toString('pem') + '\n'
  const issued: IssuedCertificate = {
    certPem: leafPem,
    keyPem: await exportPrivateKeyPem(leafKeys.privateKey),
    chainPem: leafPem + authority.chainPem,
    x5tS256: createHash('sha256').update(new Uint8Array(leaf.rawData)).digest('base64url'),
    serialNumber,
  }
  if (options.spiffeId !== undefined) issued.spiffeId = options.spiffeId
  return issued
}

/** The URI SANs (`spiffeId` first, then `uris`), the DNS and the IP address SANs. */
function subjectAltNames(options: CertificateOptions): SubjectAltName[] {
  const uris = [...(options.spiffeId !== undefined ? [options.spiffeId] : []), ...(options.uris ?? [])]
  return [
    ...uris.map((value) => ({ type: 'url' as const, value })),
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ]
}

/** basicConstraints, keyUsage (unless none is asked for), extendedKeyUsage, the key identifiers, then the SANs when there are any. */
async function leafExtensions(leaf: {
  options: CertificateOptions
  usage: NonNullable<CertificateOptions['usage']>
  names: SubjectAltName[]
  publicKey: webcrypto.CryptoKey
  authorityKeyId: x509.AuthorityKeyIdentifierExtension
}): Promise<x509.Extension[]> {
  const { options, usage, names } = leaf
  const ekus: string[] = []
  if (usage === 'client' || usage === 'both') ekus.push(x509.ExtendedKeyUsage.clientAuth)
  if (usage === 'server' || usage === 'both') ekus.push(x509.ExtendedKeyUsage.serverAuth)
  const keyUsages = options.keyUsages ?? ['digitalSignature', 'keyAgreement']
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(options.isCa === true, undefined, true),
    ...(keyUsages.length > 0
      ? [
          new x509.KeyUsagesExtension(
            keyUsages.reduce((flags, usage) => flags | x509.KeyUsageFlags[usage], 0),
            true,
          ),
        ]
      : []),
    new x509.ExtendedKeyUsageExtension(ekus, false),
    await x509.SubjectKeyIdentifierExtension.create(leaf.publicKey),
    leaf.authorityKeyId,
  ]
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false))
  return extensions
}

/** The CA's `issueCrl`: checks the options, numbers the CRLs 1, 2, … and signs each. */
function crlIssuer(authority: Authority): (options: CrlOptions) => Promise<string> {
  let crlNumber = 0
  const signingKey = KeyObject.from(authority.keys.privateKey)
  const issuerName = new Uint8Array(authority.cert.subjectName.toArrayBuffer())
  const authorityKeyIdDer = new Uint8Array(authority.authorityKeyId.rawData)
  return async (options) => {
    checkOptions('issueCrl', options, CRL_OPTIONS)
    const thisUpdate = options.thisUpdate ?? new Date(Date.now() - 60 * 60 * 1000)
    const nextUpdate = options.nextUpdate ?? new Date(Date.now() + 24 * 60 * 60 * 1000)
    const serials = (options.revoked ?? []).map((entry) => normalizeSerialNumber(typeof entry === 'string' ? entry : entry.serialNumber))
    const duplicate = serials.find((serial, i) => serials.indexOf(serial) !== i)
    if (duplicate !== undefined) throw new TypeError(`issueCrl: serial number ${duplicate} is listed twice`)
    crlNumber += 1
    return signCrl({ issuerName, authorityKeyIdDer, signingKey, thisUpdate, nextUpdate, serials, crlNumber })
  }
}

async function generateEcKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(EC_ALGORITHM, true, ['sign', 'verify'])
}

async function exportPrivateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  return toPem(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY')
}
