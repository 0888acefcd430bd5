-- Settlement of one request in one round trip: the rate limits' token correction and
-- concurrency slot (rate_finish), the budget charge (budget_settle), then the usage event onto
-- the stream billing drains. Composed by gateway.lua.compose_script after meter_layout.lua,
-- which reads the arguments; this script's own key is the stream, its own arguments the
-- event's field name and the encoded event.
-- Returns {slots freed, budget reply ({} when no budget was reserved)}. The event goes last:
--   if appending fails, the counters are settled and the caller writes the event elsewhere.
local freed = 0
if n_rate_keys > 0 then freed = rate_finish(rate_keys, rate_args) end
local budget = {}
if n_budget_keys > 0 then budget = budget_settle(budget_keys, budget_args) end
redis.call('XADD', KEYS[own_keys_at], '*', ARGV[own_args_at], ARGV[own_args_at + 1])
return {freed, budget}
