'use strict';
// Peer proxy for benchmarks/proxy_bench.py: the `http-proxy` npm package in one Node.js process.
// Usage: node http_proxy.js LISTEN_PORT UPSTREAM_HOST:PORT
//
// The keep-alive Agent matters: without one http-proxy sets `Connection: close` on every upstream
// request, so the benchmark would measure TCP connection setup rather than proxying. Its limits match
// the pulsegate pool in the benchmark config (max_connections 1024, max_idle 256) so the two
// proxies are compared with the same upstream connection budget.
const http = require('node:http');
const httpProxy = require('http-proxy');

const [portArg, upstream] = process.argv.slice(2);
if (!portArg || !upstream) {
  console.error('usage: node http_proxy.js LISTEN_PORT UPSTREAM_HOST:PORT');
  process.exit(2);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1024, maxFreeSockets: 256 });
const proxy = httpProxy.createProxyServer({ target: `http://${upstream}`, agent });

proxy.on('error', (err, req, res) => {
  // A failed upstream exchange answers 502 instead of crashing the process mid-benchmark.
  if (res && !res.headersSent && typeof res.writeHead === 'function') {
    res.writeHead(502, { 'content-type': 'text/plain' });
  }
  if (res && typeof res.end === 'function') res.end('bad gateway\n');
});

const server = http.createServer((req, res) => proxy.web(req, res));
// Node's default 5 s idle timeout is fine for wrk, which keeps every connection busy; the
// per-socket request cap stays at its default (unlimited), like nginx's keepalive_requests here.
server.listen(Number(portArg), '127.0.0.1', () => {
  console.log(`node-http-proxy listening on 127.0.0.1:${portArg} -> ${upstream}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    agent.destroy();
    process.exit(0);
  });
}
