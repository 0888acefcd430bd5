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

-- The record (budget_reserve.lua): a JSON array while reserved, then the word 'settled' or
-- 'released' for the rest of its life.
local raw = redis.call('GET', record)
if not raw then return {0} end
if raw == 'settled' or raw == 'released' then return {2} end

local fields = cjson.decode(raw)
local amount, member, n = tonumber(fields[1]), fields[2], tonumber(fields[3])
local out = {1}
for i = 1, n do
  local base = 3 + (i - 1) * 7
  local spent_key, reserved_key, leases_key = fields[base + 1], fields[base + 2], fields[base + 3]
  local ttl, soft, alert = tonumber(fields[base + 4]), tonumber(fields[base + 5]), fields[base + 6]
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
  table.insert(out, fields[base + 7]); table.insert(out, is_crossed); table.insert(out, is_missing)
end
redis.call('SET', record, mode == 'settle' and 'settled' or 'released', 'KEEPTTL')
return out
