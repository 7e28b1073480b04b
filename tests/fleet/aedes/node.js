'use strict'
// One aedes node of a cluster: state (retained messages, wills, subscriptions, QoS 1/2
// queues) in Redis through aedes-persistence-redis, messages between nodes through
// mqemitter-redis. Usage: node node.js <mqtt-port> <redis-url> [heartbeat-ms]
// Nodes sharing one Redis form one broker: a client of either sees the other's messages.
const { createServer } = require('node:net')
const { Aedes } = require('aedes')
const mqemitterRedis = require('mqemitter-redis')
const persistenceRedis = require('aedes-persistence-redis')

async function main () {
  const [port, redisUrl, heartbeat] = process.argv.slice(2)
  if (!port || !redisUrl) {
    console.error('usage: node node.js <mqtt-port> <redis-url> [heartbeat-ms]')
    process.exit(2)
  }
  const url = new URL(redisUrl)
  // ioredis options (both libraries pass them to it)
  const redis = {
    host: url.hostname,
    port: Number(url.port || 6379),
    password: url.password ? decodeURIComponent(url.password) : undefined,
    db: Number(url.pathname.slice(1) || 0)
  }
  const broker = await Aedes.createBroker({
    mq: mqemitterRedis(redis),
    persistence: persistenceRedis(redis),
    // How often a node tells the others it is alive: the wills of a node silent for three
    // of these are published by a survivor (checked every four).
    heartbeatInterval: Number(heartbeat || 60000)
  })
  const server = createServer(broker.handle)
  const stop = () => server.close(() => broker.close(() => process.exit(0)))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  broker.on('clientError', (client, err) => console.error(`client ${client.id}: ${err.message}`))
  server.listen(Number(port), '127.0.0.1', () => {
    console.error(`aedes ${broker.id} on 127.0.0.1:${port}, redis ${redisUrl}`)
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
