/**
 * Encodes DER bytes as a PEM block.
 *
 * @param der - DER encoded bytes.
 * @param label - PEM label, e.g. `'CERTIFICATE'` or `'PRIVATE KEY'`.
 * @returns The PEM text, lines wrapped at 64 characters, ending with a newline.
 * @example
 * ```ts
 * const pem = toPem(new Uint8Array(der), 'CERTIFICATE');
 * ```
 * @internal
 */
export function toPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const base64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64')
  const lines = base64.match(/.{1,64}/g) ?? []
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`
}
