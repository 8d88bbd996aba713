-- proxy_bench.py --workload post: a 64 KiB upload answered with a short "ok". 64 KiB is
-- pulsegate's default limits.request_buffer, the largest body it holds whole before forwarding
-- (larger ones stream). wrk adds Content-Length from the body.
-- Only top-level assignments: wrk then builds the request once and never calls into Lua per
-- request. By hand: wrk -t1 -c64 -d10s --latency -s benchmarks/wrk/post.lua http://127.0.0.1:PORT
wrk.method = "POST"
wrk.path = "/upload"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("x", 65536)
