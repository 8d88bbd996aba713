'use strict';
// Peer proxy for benchmarks/proxy_bench.py: node:http in front, an undici Pool behind, one process.
// Usage: node undici_proxy.js LISTEN_PORT UPSTREAM_HOST:PORT
//
// undici is Node's fastest HTTP/1.1 client; this peer shows what a minimal Node.js proxy costs
// without http-proxy's per-request option merging and event plumbing.
const http = require('node:http');
const { pipeline } = require('node:stream');
const { Pool } = require('undici');

const [portArg, upstream] = process.argv.slice(2);
if (!portArg || !upstream) {
  console.error('usage: node undici_proxy.js LISTEN_PORT UPSTREAM_HOST:PORT');
  process.exit(2);
}

// Same upstream connection budget as the pulsegate benchmark config (max_connections 1024);
// no pipelining, because neither pulsegate nor nginx pipelines upstream requests.
const pool = new Pool(`http://${upstream}`, { connections: 1024, pipelining: 1 });

// Hop-by-hop headers (RFC 9110 section 7.6.1) belong to one connection and are not forwarded;
// undici also refuses some of them outright.
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
]);

function endToEnd(headers) {
  const out = {};
  const named = String(headers.connection || '').toLowerCase().split(',').map((s) => s.trim());
  for (const [name, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(name) && !named.includes(name)) out[name] = value;
  }
  return out;
}

function badGateway(res) {
  if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
  res.end('bad gateway\n');
}

const server = http.createServer((req, res) => {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.request({
    path: req.url,
    method: req.method,
    headers: endToEnd(req.headers),
    body: hasBody ? req : null,
  }).then(({ statusCode, headers, body }) => {
    res.writeHead(statusCode, endToEnd(headers));
    pipeline(body, res, (err) => { if (err) res.destroy(err); });
  }, () => badGateway(res));
});

server.listen(Number(portArg), '127.0.0.1', () => {
  console.log(`node-undici listening on 127.0.0.1:${portArg} -> ${upstream}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    pool.destroy().finally(() => process.exit(0));
  });
}
