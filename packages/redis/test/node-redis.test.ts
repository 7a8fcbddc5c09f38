import { createClient } from 'redis'
import { replayStoreContract, type Connection } from './contract.js'

async function open(client: ReturnType<typeof createClient>): Promise<Connection> {
  client.on('error', () => {}) // node-redis throws on an 'error' event without a listener
  await client.connect()
  return {
    client,
    raw: (args) => client.sendCommand(args),
    close: async () => client.destroy(),
  }
}

replayStoreContract({
  name: 'node-redis',
  // The README's recommended settings: fail fast while Redis is down, reconnect in the background.
  connect: (port) =>
    open(
      createClient({
        socket: { host: '127.0.0.1', port, connectTimeout: 1_000, reconnectStrategy: () => 100 },
        disableOfflineQueue: true,
      }),
    ),
  connectWithDefaults: (port) => open(createClient({ socket: { host: '127.0.0.1', port } })),
})
