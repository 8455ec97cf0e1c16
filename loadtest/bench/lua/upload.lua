-- scripts/bench: the Apache backends' upload handler (mod_lua, LuaMapHandler ^/upload$).
-- Reads the whole request body (to /dev/null, in 8 KiB blocks: no copy of it is kept) and
-- answers 200 with the number of bytes read, which scripts/bench checks before measuring.
function handle(r)
    local read = 0
    if r.method == "POST" or r.method == "PUT" then
        read = r:requestbody("/dev/null") or 0
    end
    r.content_type = "text/plain"
    r:puts("read ", tostring(read), "\n")
    return apache2.OK
end
