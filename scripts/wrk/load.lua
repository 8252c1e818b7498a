-- The storefront benchmarks' load (tradewind/benches/edge.rs, personal.rs), for wrk.
--
-- With TRADEWIND_WRK_ORDERS=<run, 0 to 4095> in the environment every request is a new order:
-- one unit of one of TRADEWIND_WRK_SKUS SKUs (B-000, B-001, ...), under an Idempotency-Key that
-- is a UUIDv7, as the API recommends: led by the time (wrk's Lua has a clock of seconds, so the
-- milliseconds are the second plus a count), then the wrk thread, the run and a counter, so that
-- no two requests of any run share a key. Each order is signed in: TRADEWIND_WRK_TOKENS names a
-- file of shopper tokens, one per line (one customer each), taken in turn. Without
-- TRADEWIND_WRK_ORDERS wrk sends its plain request (GET of the URL) over and over.
--
-- At the end, one line: "wrk-report {json}" with requests, seconds, p50/p99 latency (ms), and
-- the answers that were errors (non-2xx, timeouts, broken connections).

local run = tonumber(os.getenv("TRADEWIND_WRK_ORDERS") or "")
local skus = tonumber(os.getenv("TRADEWIND_WRK_SKUS") or "100")

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

if run then
  local n = 0
  local tokens = {}
  local path = os.getenv("TRADEWIND_WRK_TOKENS")
  if path then
    for line in io.lines(path) do
      table.insert(tokens, "Bearer " .. line)
    end
  end
  local body_head = '{"currency":"USD","lines":[{"sku":"B-'
  local body_tail = '","qty":1}],"ship_to":{"country":"SG","name":"Tan Ah Kow",'
    .. '"line1":"1 Raffles Place","line2":"#10-01","city":"Singapore","postal_code":"048616",'
    .. '"phone":"+65 6123 4567"}}'
  local headers = { ["content-type"] = "application/json" }

  function request()
    n = n + 1
    local ms = os.time() * 1000 + n % 1000
    headers["idempotency-key"] = string.format("%08x-%04x-7%03x-8%03x-%06x%06x",
      math.floor(ms / 65536), ms % 65536, id % 4096, run % 4096,
      math.floor(n / 16777216) % 16777216, n % 16777216)
    if #tokens > 0 then
      headers["authorization"] = tokens[(n * 7 + id) % #tokens + 1]
    end
    local body = body_head .. string.format("%03d", (n * 7 + id) % skus) .. body_tail
    return wrk.format("POST", nil, headers, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'wrk-report {"requests":%d,"seconds":%.6f,"p50_ms":%.4f,"p99_ms":%.4f,"errors":%d}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status + e.timeout + e.connect + e.read + e.write))
end
