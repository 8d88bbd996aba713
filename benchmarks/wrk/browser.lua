-- proxy_bench.py --workload browser: what a browser's fetch() of a JSON API sends.
-- Host (set by wrk from the URL) plus these 11 headers make 12, the same set as the
-- BROWSER_REQUEST of hotpath_bench.py, so a header-parsing cost shows up in both.
-- Only top-level assignments: with no request()/response() function wrk builds the request
-- once and never calls into Lua per request, so the load side stays as cheap as without -s.
-- By hand: wrk -t1 -c64 -d10s --latency -s benchmarks/wrk/browser.lua http://127.0.0.1:PORT
wrk.method = "GET"
wrk.path = "/api/items?page=2"
wrk.headers["User-Agent"] =
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
wrk.headers["Accept"] = "application/json, text/plain, */*"
wrk.headers["Accept-Language"] = "en-US,en;q=0.9"
wrk.headers["Accept-Encoding"] = "gzip, deflate, br"
wrk.headers["Referer"] = "https://shop.example.com/items"
wrk.headers["Cookie"] = "session=abc123; theme=dark"
wrk.headers["Sec-Fetch-Dest"] = "empty"
wrk.headers["Sec-Fetch-Mode"] = "cors"
wrk.headers["Sec-Fetch-Site"] = "same-origin"
wrk.headers["Cache-Control"] = "no-cache"
wrk.headers["Connection"] = "keep-alive"
