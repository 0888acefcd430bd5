-- Admission of one request in one round trip, all or nothing: the budget reservation
-- (budget_reserve), then the rate limits (rate_admit); a rate refusal gives the reservation
-- back at once (budget_settle in release mode). Composed by gateway.lua.compose_script.
--
-- KEYS: the rate script's keys (ARGV[1] of them), then the budget script's (ARGV[3]).
-- ARGV: n_rate_keys, n_rate_args, n_budget_keys, n_budget_args, the rate script's arguments,
--   the budget script's arguments. A part with no keys is skipped.
-- Returns {budget reply, rate reply}; a reply is {} when its part did not run (no budget,
--   no rate limits, or the budget refused first).
local function slice(list, from, count)
  local out = {}
  for i = 1, count do out[i] = list[from + i - 1] end
  return out
end

local n_rate_keys, n_rate_args = tonumber(ARGV[1]), tonumber(ARGV[2])
local n_budget_keys, n_budget_args = tonumber(ARGV[3]), tonumber(ARGV[4])
local budget_keys = slice(KEYS, n_rate_keys + 1, n_budget_keys)

local budget = {}
if n_budget_keys > 0 then
  budget = budget_reserve(budget_keys, slice(ARGV, 5 + n_rate_args, n_budget_args))
  if budget[1] ~= 1 then return {budget, {}} end
end
local rate = {}
if n_rate_keys > 0 then
  rate = rate_admit(slice(KEYS, 1, n_rate_keys), slice(ARGV, 5, n_rate_args))
  if rate[1] == 0 and n_budget_keys > 0 then
    budget_settle({budget_keys[1]}, {'0', 'release'})
  end
end
return {budget, rate}
