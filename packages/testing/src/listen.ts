import type { AddressInfo, Server } from 'node:net'

/**
 * Starts `server` listening on `127.0.0.1`, on a port the system picks.
 *
 * @param server - An HTTP(S) server, not yet listening.
 * @returns The port, once the server listens; rejects with the server's error when it cannot.
 * @example
 * ```ts
 * const port = await listenOnLoopback(server);
 * ```
 * @internal
 */
export async function listenOnLoopback(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  return (server.address() as AddressInfo).port
}
