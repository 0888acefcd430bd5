-- Settle (charge the actual cost) or release a reservation, exactly once.
--
-- KEYS[1]: the reservation record. The budget keys are read from the record, which names the
-- exact period the reservation was made in (single Redis; not cluster-safe by design).
-- ARGV: actual µUSD (ignored for release), mode "settle" | "release".
-- Returns {status, then per budget: label, is_soft_crossed (0/1), is_counter_missing (0/1)}:
--   status 1 done now, 2 done before (nothing changed), 0 unknown / long expired record.
local record = KEYS[1]
local actual = tonumber(ARGV[1])
local mode = ARGV[2]

local state = redis.call('HGET', record, 'state')
if not state then return {0} end
if state ~= 'reserved' then return {2} end

local member = redis.call('HGET', record, 'member')
local amount = tonumber(redis.call('HGET', record, 'amount'))
local n = tonumber(redis.call('HGET', record, 'n'))
local out = {1}
for i = 1, n do
  local p = 'b' .. i .. '_'
  local v = redis.call('HMGET', record, p .. 'spent', p .. 'reserved_key', p .. 'leases',
    p .. 'ttl', p .. 'soft', p .. 'alert', p .. 'label')
  local spent_key, reserved_key, leases_key = v[1], v[2], v[3]
  local ttl, soft, alert = tonumber(v[4]), tonumber(v[5]), v[6]
  -- If the lease already ran out, the sweep in reserve gave the amount back; don't twice.
  if redis.call('ZREM', leases_key, member) == 1 then
    redis.call('DECRBY', reserved_key, amount)
  end
  local is_crossed, is_missing = 0, 0
  if mode == 'settle' and actual > 0 then
    if redis.call('EXISTS', spent_key) == 1 then
      local after = redis.call('INCRBY', spent_key, actual)
      -- SET NX makes "first time in the period" hold across every process.
      if soft >= 0 and after >= soft then
        local set_args = {alert, '1', 'NX'}
        if ttl > 0 then table.insert(set_args, 'PX'); table.insert(set_args, ttl) end
        if redis.call('SET', unpack(set_args)) then is_crossed = 1 end
      end
    else
      -- Counter lost: the ledger keeps the charge; the rebuild will include it.
      is_missing = 1
    end
  end
  table.insert(out, v[7]); table.insert(out, is_crossed); table.insert(out, is_missing)
end
redis.call('HSET', record, 'state', mode == 'settle' and 'settled' or 'released')
return out
