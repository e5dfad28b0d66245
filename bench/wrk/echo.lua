-- POST of 4 KiB that the echo app sends back.
wrk.method = "POST"
wrk.path = "/echo"
wrk.headers["Content-Type"] = "application/octet-stream"
local bytes = {}
for i = 0, 4095 do
  bytes[#bytes + 1] = string.char((i * 7 + 3) % 251)
end
wrk.body = table.concat(bytes)
