-- proxy_bench.py --workload large: a 1 MiB static file from the origin, so the proxy's cost is
-- dominated by moving bytes rather than by parsing requests.
-- Only top-level assignments: wrk then builds the request once and never calls into Lua per
-- request. By hand: wrk -t1 -c64 -d10s --latency -s benchmarks/wrk/large.lua http://127.0.0.1:PORT
wrk.method = "GET"
wrk.path = "/large"
