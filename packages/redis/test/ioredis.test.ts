import { Redis } from 'ioredis'
import { replayStoreContract, type Connection } from './contract.js'

async function open(client: Redis): Promise<Connection> {
  client.on('error', () => {}) // connection errors surface as rejected commands; keep the log quiet
  await client.connect()
  return {
    client,
    raw: ([command, ...args]) => client.call(command!, ...args),
    close: async () => client.disconnect(),
  }
}

replayStoreContract({
  name: 'ioredis',
  // The README's recommended settings: fail fast while Redis is down, reconnect in the background.
  connect: (port) =>
    open(
      new Redis({
        host: '127.0.0.1',
        port,
        lazyConnect: true,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        connectTimeout: 1_000,
        retryStrategy: () => 100,
      }),
    ),
  connectWithDefaults: (port) => open(new Redis({ host: '127.0.0.1', port, lazyConnect: true })),
})
