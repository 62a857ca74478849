-- wrk script: send pre-signed raw HTTP requests from a pool file, in rotation; print a JSON summary.
-- Pool file: a line with the count, then per request a line with its length and the raw bytes.
local thread_count = 0

function setup(thread)
   thread:set("thread_index", thread_count)
   thread_count = thread_count + 1
end

function init(args)
   local f = assert(io.open(args[1], "rb"))
   pool = {}
   local n = tonumber(f:read("*l"))
   for i = 1, n do
      local len = tonumber(f:read("*l"))
      pool[i] = f:read(len)
   end
   f:close()
   size = n
   -- each thread starts at its own place in the pool
   position = ((thread_index or 0) * 7919) % size
end

function request()
   position = position % size + 1
   return pool[position]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK-JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
      '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
      '"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
