-- scripts/bench: wrk POSTs a body of N bytes (default 1 MiB) on every request.
--     wrk -s loadtest/bench/lua/post.lua URL -- N
-- wrk.format() (called after init) adds the Content-Length header.
function init(args)
    local size = tonumber(args[1]) or 1048576
    wrk.method = "POST"
    wrk.body = string.rep("x", size)
    wrk.headers["Content-Type"] = "application/octet-stream"
end
