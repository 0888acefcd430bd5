-- Admit one request against the rate limits of up to two scopes (tenant, key), all or nothing.
--
-- GCRA held as a "fill" per scope and kind: fill = units in use * window_ms, drained by
-- `limit` per elapsed ms, capacity limit * window_ms. Everything stays an exact integer far
-- below 2^53, so 60 rpm admits exactly 60 at one instant, whatever the number of callers.
--
-- KEYS, per scope i (3 each): requests hash, tokens hash, in-flight sorted set.
-- ARGV: now_ms (-1: Redis TIME), window_ms, lease_ms, request_id, cost_tokens, n_scopes,
--       then per scope: rpm_limit, tpm_limit, concurrency_limit (-1 = unlimited).
-- Returns {admitted, rejected_scope (0 = none), rejected_kind (0 none, 1 requests, 2 tokens,
--          3 concurrency), wait_ms, is_too_large, then per scope: req_remaining, req_reset_ms,
--          tok_remaining, tok_reset_ms, conc_remaining} with -1 for unlimited.
local now = tonumber(ARGV[1])
if now < 0 then
  -- The caller has no clock of its own: use Redis's, one clock for every process.
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local window = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local request_id = ARGV[4]
local cost = tonumber(ARGV[5])
local n_scopes = tonumber(ARGV[6])

-- A process whose clock runs behind must not move a bucket's time backwards (that would
-- drain the same interval twice), so time never goes back for a key.
local function read_fill(key, limit)
  local v = redis.call('HMGET', key, 'f', 't')
  local fill = tonumber(v[1]) or 0
  local at = tonumber(v[2]) or now
  local t = math.max(now, at)
  local drained = (t - at) * limit
  if drained >= fill then return 0, t end
  return fill - drained, t
end

local function write_fill(key, fill, t, limit)
  redis.call('HSET', key, 'f', fill, 't', t)
  -- The key is useless once fully drained; +1s covers rounding and clock skew.
  redis.call('PEXPIRE', key, math.ceil(fill / limit) + 1000)
end

local admitted = 1
local rejected_scope, rejected_kind, wait_ms, too_large = 0, 0, 0, 0
local state = {}

for i = 1, n_scopes do
  local base = 6 + (i - 1) * 3
  local rpm, tpm, conc = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local kreq, ktok, kconc = KEYS[(i - 1) * 3 + 1], KEYS[(i - 1) * 3 + 2], KEYS[(i - 1) * 3 + 3]
  local s = {rpm = rpm, tpm = tpm, conc = conc, kreq = kreq, ktok = ktok, kconc = kconc}
  if rpm >= 0 then
    s.rfill, s.rt = read_fill(kreq, rpm)
    local need = s.rfill + window - rpm * window
    if need > 0 and admitted == 1 then
      admitted, rejected_scope, rejected_kind = 0, i, 1
      if rpm == 0 then too_large, wait_ms = 1, window else wait_ms = math.ceil(need / rpm) end
    end
  end
  if tpm >= 0 then
    s.tfill, s.tt = read_fill(ktok, tpm)
    local need = s.tfill + cost * window - tpm * window
    if need > 0 and admitted == 1 then
      admitted, rejected_scope, rejected_kind = 0, i, 2
      if cost > tpm then too_large, wait_ms = 1, window else wait_ms = math.ceil(need / tpm) end
    end
  end
  if conc >= 0 then
    -- Slots of crashed holders expire with their lease instead of leaking.
    redis.call('ZREMRANGEBYSCORE', kconc, '-inf', now)
    s.held = redis.call('ZCARD', kconc)
    local is_holder = redis.call('ZSCORE', kconc, request_id)
    s.is_holder = is_holder ~= false
    if not s.is_holder and s.held >= conc and admitted == 1 then
      -- Nothing predicts when a stream ends; one second is the honest minimum.
      admitted, rejected_scope, rejected_kind, wait_ms = 0, i, 3, 1000
      if conc == 0 then too_large = 1 end
    end
  end
  state[i] = s
end

if admitted == 1 then
  for i = 1, n_scopes do
    local s = state[i]
    if s.rpm >= 0 then
      s.rfill = s.rfill + window
      write_fill(s.kreq, s.rfill, s.rt, math.max(s.rpm, 1))
    end
    if s.tpm >= 0 and cost > 0 then
      s.tfill = s.tfill + cost * window
      write_fill(s.ktok, s.tfill, s.tt, math.max(s.tpm, 1))
    end
    if s.conc >= 0 then
      redis.call('ZADD', s.kconc, now + lease, request_id)
      redis.call('PEXPIRE', s.kconc, lease + window)
      if not s.is_holder then s.held = s.held + 1 end
    end
  end
end

local out = {admitted, rejected_scope, rejected_kind, wait_ms, too_large}
for i = 1, n_scopes do
  local s = state[i]
  if s.rpm >= 0 then
    table.insert(out, math.max(0, math.floor((s.rpm * window - s.rfill) / window)))
    table.insert(out, s.rpm > 0 and math.ceil(s.rfill / s.rpm) or window)
  else
    table.insert(out, -1); table.insert(out, -1)
  end
  if s.tpm >= 0 then
    table.insert(out, math.max(0, math.floor((s.tpm * window - s.tfill) / window)))
    table.insert(out, s.tpm > 0 and math.ceil(s.tfill / s.tpm) or window)
  else
    table.insert(out, -1); table.insert(out, -1)
  end
  if s.conc >= 0 then
    table.insert(out, math.max(0, s.conc - s.held))
  else
    table.insert(out, -1)
  end
end
return out
