import { createHash, webcrypto } from 'node:crypto';
import { toPem } from './pem.js';
import { randomSerialNumber } from './serial-number.js';
import { validityWindow, type CertificateValidity } from './validity.js';
import { x509 } from './x509-provider.js';

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
  spiffeId?: string;
  /**
   * Extra URI SANs, written verbatim after `spiffeId` (e.g. a second SPIFFE
   * ID or a malformed one). Default: none.
   */
  uris?: string[];
  /** DNS SANs. Default: none (`['localhost']` for server certificates). */
  dnsNames?: string[];
  /**
   * IP address SANs (IPv4 or IPv6 text form). Default: none
   * (`['127.0.0.1', '::1']` for server certificates).
   */
  ipAddresses?: string[];
  /**
   * Subject common name. Default: `spiffeId` if set (truncated to 64
   * characters), otherwise the first DNS name for server certificates,
   * otherwise `'workload'`.
   */
  commonName?: string;
  /**
   * Named validity window. Default `'valid'` (notBefore now − 1 h, notAfter
   * now + 24 h); `'expired'` ended one day ago; `'not-yet-valid'` starts in one day.
   */
  validity?: CertificateValidity;
  /** Explicit start of validity; overrides the one from `validity`. */
  notBefore?: Date;
  /** Explicit end of validity; overrides the one from `validity`. */
  notAfter?: Date;
  /**
   * Extended key usage: `'client'` (clientAuth), `'server'` (serverAuth) or
   * `'both'`. Default `'client'` for {@link TestCa.issueCertificate},
   * `'server'` for {@link TestCa.issueServerCertificate}.
   */
  usage?: 'client' | 'server' | 'both';
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
  certPem: string;
  /** The leaf's ECDSA P-256 private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). */
  keyPem: string;
  /** The leaf certificate followed by the CA certificate, PEM encoded. */
  chainPem: string;
  /**
   * base64url(SHA-256(DER of the leaf)), i.e. the value of the
   * `cnf["x5t#S256"]` confirmation claim of RFC 8705.
   */
  x5tS256: string;
  /** The SPIFFE ID written as URI SAN, when one was requested. */
  spiffeId?: string;
  /** Serial number, lower-case hexadecimal. */
  serialNumber: string;
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
  /** The self-signed root certificate, PEM encoded (use as `ca` in TLS options). */
  certPem: string;
  /** The root's ECDSA P-256 private key, PKCS#8 PEM. */
  keyPem: string;
  /** The root's common name. */
  name: string;
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
  issueCertificate(options?: CertificateOptions): Promise<IssuedCertificate>;
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
  issueServerCertificate(options?: CertificateOptions): Promise<IssuedCertificate>;
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
  /** Common name of the root. Default `'Callsign Test CA <random hex>'`. */
  commonName?: string;
}

const EC_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const CA_VALIDITY_MS = 10 * 365 * 24 * 60 * 60 * 1000;
const MAX_COMMON_NAME = 64;

/**
 * Creates a throwaway self-signed root CA: ECDSA P-256, basicConstraints
 * CA:true (critical), keyUsage keyCertSign + cRLSign (critical), subject key
 * identifier, random 128-bit serial, valid from one hour ago for ten years.
 *
 * @param options - Optional common name; default `'Callsign Test CA <random hex>'`.
 * @returns The CA, able to issue client and server certificates.
 * @example
 * ```ts
 * import { createTestCa } from '@callsign/testing';
 *
 * const ca = await createTestCa();
 * const svid = await ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' });
 * ```
 */
export async function createTestCa(options: TestCaOptions = {}): Promise<TestCa> {
  const name = options.commonName ?? `Callsign Test CA ${randomSerialNumber().slice(0, 8)}`;
  const keys = await generateEcKeyPair();
  const now = Date.now();
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey);
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    name: [{ CN: [name] }],
    notBefore: new Date(now - 60 * 60 * 1000),
    notAfter: new Date(now + CA_VALIDITY_MS),
    keys,
    signingAlgorithm: EC_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ski,
    ],
  });
  const certPem = caCert.toString('pem') + '\n';
  const keyPem = await exportPrivateKeyPem(keys.privateKey);
  const authorityKeyId = new x509.AuthorityKeyIdentifierExtension(ski.keyId);

  async function issue(
    options: CertificateOptions,
    defaultUsage: 'client' | 'server',
    defaultCommonName: string | undefined,
  ): Promise<IssuedCertificate> {
    const leafKeys = await generateEcKeyPair();
    const serialNumber = randomSerialNumber();
    const uris = [...(options.spiffeId !== undefined ? [options.spiffeId] : []), ...(options.uris ?? [])];
    const names: Array<{ type: 'url' | 'dns' | 'ip'; value: string }> = [
      ...uris.map((value) => ({ type: 'url' as const, value })),
      ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
      ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
    ];
    const usage = options.usage ?? defaultUsage;
    const ekus: string[] = [];
    if (usage === 'client' || usage === 'both') ekus.push(x509.ExtendedKeyUsage.clientAuth);
    if (usage === 'server' || usage === 'both') ekus.push(x509.ExtendedKeyUsage.serverAuth);
    const commonName =
      options.commonName ??
      (options.spiffeId ?? defaultCommonName ?? 'workload').slice(0, MAX_COMMON_NAME);
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
        true,
      ),
      new x509.ExtendedKeyUsageExtension(ekus, false),
      await x509.SubjectKeyIdentifierExtension.create(leafKeys.publicKey),
      authorityKeyId,
    ];
    if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber,
      subject: [{ CN: [commonName] }],
      issuer: caCert.subject,
      ...validityWindow(options.validity, { notBefore: options.notBefore, notAfter: options.notAfter }),
      publicKey: leafKeys.publicKey,
      signingKey: keys.privateKey,
      signingAlgorithm: EC_ALGORITHM,
      extensions,
    });
    const leafPem = leaf.toString('pem') + '\n';
    const issued: IssuedCertificate = {
      certPem: leafPem,
      keyPem: await exportPrivateKeyPem(leafKeys.privateKey),
      chainPem: leafPem + certPem,
      x5tS256: createHash('sha256').update(new Uint8Array(leaf.rawData)).digest('base64url'),
      serialNumber,
    };
    if (options.spiffeId !== undefined) issued.spiffeId = options.spiffeId;
    return issued;
  }

  return {
    certPem,
    keyPem,
    name,
    issueCertificate: (opts = {}) => issue(opts, 'client', undefined),
    issueServerCertificate: (opts = {}) => {
      const dnsNames = opts.dnsNames ?? ['localhost'];
      return issue(
        { ...opts, dnsNames, ipAddresses: opts.ipAddresses ?? ['127.0.0.1', '::1'] },
        'server',
        dnsNames[0],
      );
    },
  };
}

async function generateEcKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(EC_ALGORITHM, true, ['sign', 'verify']);
}

async function exportPrivateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  return toPem(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}
