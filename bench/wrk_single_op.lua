-- wrk script for bench/single_ops.py: one stock movement per POST /api/sync, fresh ids every request.
--
--   wrk -s bench/wrk_single_op.lua <gateway>/api/sync -- <targets file> <nonce>
--
-- The targets file holds one line per tenant, "<token> <tenant id> <product id>": tokens are minted by
-- the Python side (nothing is signed here). Requests take the tenants in turn. Every request gets a new
-- operationId (= idempotencyKey) and a new movement id, unique across threads and runs: the run's nonce,
-- the thread's index and the thread's request counter. done() prints one line the Python side reads.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("index", #threads)
end

function init(args)
  targets = {}
  for line in io.lines(args[1]) do
    local token, tenant, product = line:match("^(%S+) (%S+) (%S+)$")
    if token then
      table.insert(targets, { auth = "Bearer " .. token, tenant = tenant, product = product })
    end
  end
  nonce = args[2]
  counter = 0
  ok = 0
  other = 0
end

local body_format = '{"operations":[{"operationId":"%s","idempotencyKey":"%s","entityType":"stockMovement",'
  .. '"entityId":"%s","operationType":"create","tenantId":"%s","modifiedAt":"%s",'
  .. '"payload":{"productId":"%s","kind":"entry","quantity":1}}]}'

function request()
  counter = counter + 1
  local target = targets[(counter + index) % #targets + 1]
  local operation_id = string.format("%s-%04x-4000-8000-%012x", nonce, index, counter)
  local movement_id = string.format("%s-%04x-4001-8000-%012x", nonce, index, counter)
  local body = string.format(
    body_format, operation_id, operation_id, movement_id, target.tenant,
    os.date("!%Y-%m-%dT%H:%M:%SZ"), target.product
  )
  local headers = { ["Authorization"] = target.auth, ["Content-Type"] = "application/json" }
  return wrk.format("POST", wrk.path, headers, body)
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local answered_ok, answered_other = 0, 0
  for _, thread in ipairs(threads) do
    answered_ok = answered_ok + thread:get("ok")
    answered_other = answered_other + thread:get("other")
  end
  local errors = summary.errors
  io.write(string.format(
    "stockzen-wrk requests=%d duration_us=%d ok=%d other=%d socket_errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, answered_ok, answered_other,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)
  ))
end
