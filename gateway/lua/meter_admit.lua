-- Admission of one request in one round trip, all or nothing: the budget reservation
-- (budget_reserve), then the rate limits (rate_admit); a rate refusal gives the reservation
-- back at once (budget_settle in release mode). Composed by gateway.lua.compose_script after
-- meter_layout.lua, which reads the arguments. A part with no keys is skipped.
-- Returns {budget reply, rate reply}; a reply is {} when its part did not run (no budget,
--   no rate limits, or the budget refused first).
local budget = {}
if n_budget_keys > 0 then
  budget = budget_reserve(budget_keys, budget_args)
  if budget[1] ~= 1 then return {budget, {}} end
end
local rate = {}
if n_rate_keys > 0 then
  rate = rate_admit(rate_keys, rate_args)
  if rate[1] == 0 and n_budget_keys > 0 then
    budget_settle({budget_keys[1]}, {'0', 'release'})
  end
end
return {budget, rate}
