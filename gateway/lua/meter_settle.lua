-- Settlement of one request in one round trip: the rate limits' token correction and
-- concurrency slot (rate_finish), the budget charge (budget_settle), then the usage event onto
-- the stream billing drains. Composed by gateway.lua.compose_script.
--
-- KEYS: the rate script's keys (ARGV[1] of them), the budget script's (ARGV[3]), the stream.
-- ARGV: n_rate_keys, n_rate_args, n_budget_keys, n_budget_args, the rate script's arguments,
--   the budget script's arguments, the event's field name, the encoded event.
-- Returns {slots freed, budget reply ({} when no budget was reserved)}. The event goes last:
--   if appending fails, the counters are settled and the caller writes the event elsewhere.
local function slice(list, from, count)
  local out = {}
  for i = 1, count do out[i] = list[from + i - 1] end
  return out
end

local n_rate_keys, n_rate_args = tonumber(ARGV[1]), tonumber(ARGV[2])
local n_budget_keys, n_budget_args = tonumber(ARGV[3]), tonumber(ARGV[4])

local freed = 0
if n_rate_keys > 0 then
  freed = rate_finish(slice(KEYS, 1, n_rate_keys), slice(ARGV, 5, n_rate_args))
end
local budget = {}
if n_budget_keys > 0 then
  budget = budget_settle(slice(KEYS, n_rate_keys + 1, n_budget_keys),
                         slice(ARGV, 5 + n_rate_args, n_budget_args))
end
local field_at = 5 + n_rate_args + n_budget_args
redis.call('XADD', KEYS[n_rate_keys + n_budget_keys + 1], '*', ARGV[field_at], ARGV[field_at + 1])
return {freed, budget}
