-- The argument layout both composed metering scripts share (gateway/meter_scripts.py):
-- KEYS: the rate part's keys (ARGV[1] of them), then the budget part's (ARGV[3]), then any
--   keys of the main script's own.
-- ARGV: n_rate_keys, n_rate_args, n_budget_keys, n_budget_args, the rate part's arguments,
--   the budget part's arguments, then any arguments of the main script's own.
local function slice(list, from, count)
  local out = {}
  for i = 1, count do out[i] = list[from + i - 1] end
  return out
end

local n_rate_keys, n_rate_args = tonumber(ARGV[1]), tonumber(ARGV[2])
local n_budget_keys, n_budget_args = tonumber(ARGV[3]), tonumber(ARGV[4])
local rate_keys, rate_args = slice(KEYS, 1, n_rate_keys), slice(ARGV, 5, n_rate_args)
local budget_keys = slice(KEYS, n_rate_keys + 1, n_budget_keys)
local budget_args = slice(ARGV, 5 + n_rate_args, n_budget_args)
local own_keys_at, own_args_at = n_rate_keys + n_budget_keys + 1, 5 + n_rate_args + n_budget_args
