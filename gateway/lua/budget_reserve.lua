-- Reserve `amount` micro-USD on up to two budgets (tenant, key): on all of them or on none.
--
-- KEYS[1]: the reservation record (HASH) of this request id;
--   then per budget i (3 each): spent (integer µUSD), reserved (integer µUSD),
--   leases (ZSET member "<request_id>|<amount>", score = lease expiry ms).
-- ARGV: now_ms, lease_ms, request_id, amount, record_ttl_ms, n_budgets,
--   then per budget: limit, key_ttl_ms (-1 = no expiry), soft_threshold (-1 = none), alert key,
--   label (echoed into the record for settle).
-- Returns {status, index, spent, reserved}: status 1 reserved, 0 rejected by budget `index`,
--   2 duplicate request id (already reserved, nothing done), 3 spent counter of budget `index`
--   missing (rebuild it from the ledger, then retry).
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local request_id = ARGV[3]
local amount = tonumber(ARGV[4])
local record_ttl = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local record = KEYS[1]

if redis.call('EXISTS', record) == 1 then return {2, 0, 0, 0} end

local budgets = {}
for i = 1, n do
  local a = 6 + (i - 1) * 5
  local b = {
    spent_key = KEYS[1 + (i - 1) * 3 + 1], reserved_key = KEYS[1 + (i - 1) * 3 + 2],
    leases_key = KEYS[1 + (i - 1) * 3 + 3],
    limit = tonumber(ARGV[a + 1]), ttl = tonumber(ARGV[a + 2]),
    soft = ARGV[a + 3], alert = ARGV[a + 4], label = ARGV[a + 5],
  }
  -- Lazy reclaim: leases that ran out (their holder crashed or hung) give their amount back
  -- here, bounded per call so one call never stalls Redis. ZREM decides who subtracts, so a
  -- late settle and this sweep never both do.
  local expired = redis.call('ZRANGEBYSCORE', b.leases_key, '-inf', now, 'LIMIT', 0, 100)
  for _, member in ipairs(expired) do
    local held = tonumber(string.match(member, '|(%d+)$')) or 0
    if redis.call('ZREM', b.leases_key, member) == 1 then
      redis.call('DECRBY', b.reserved_key, held)
    end
  end
  local spent = redis.call('GET', b.spent_key)
  if not spent then return {3, i, 0, 0} end
  b.spent = tonumber(spent)
  b.reserved = tonumber(redis.call('GET', b.reserved_key) or '0')
  budgets[i] = b
end

for i = 1, n do
  local b = budgets[i]
  if b.spent + b.reserved + amount > b.limit then return {0, i, b.spent, b.reserved} end
end

local member = request_id .. '|' .. amount
local fields = {'state', 'reserved', 'amount', amount, 'member', member, 'n', n}
for i = 1, n do
  local b = budgets[i]
  redis.call('INCRBY', b.reserved_key, amount)
  redis.call('ZADD', b.leases_key, now + lease, member)
  if b.ttl > 0 then
    redis.call('PEXPIRE', b.reserved_key, b.ttl)
    redis.call('PEXPIRE', b.leases_key, b.ttl)
  end
  local p = 'b' .. i .. '_'
  for _, kv in ipairs({
    {'spent', b.spent_key}, {'reserved_key', b.reserved_key}, {'leases', b.leases_key},
    {'ttl', b.ttl}, {'soft', b.soft}, {'alert', b.alert}, {'label', b.label},
  }) do
    table.insert(fields, p .. kv[1]); table.insert(fields, kv[2])
  end
end
redis.call('HSET', record, unpack(fields))
redis.call('PEXPIRE', record, record_ttl)
return {1, 0, 0, 0}
