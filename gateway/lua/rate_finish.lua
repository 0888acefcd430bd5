-- End (or correct) an admitted request: move the token window by (actual - reserved) and/or
-- free its concurrency slot, in every scope at once.
--
-- KEYS, per scope i (2 each): tokens hash, in-flight sorted set.
-- ARGV: now_ms (-1: Redis TIME), window_ms, request_id, delta_tokens, is_settle (0/1), is_release (0/1), n_scopes,
--       then per scope: tpm_limit (-1 = unlimited).
-- Returns the number of in-flight slots freed.
local now = tonumber(ARGV[1])
if now < 0 then
  -- The caller has no clock of its own: use Redis's, one clock for every process.
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local window = tonumber(ARGV[2])
local request_id = ARGV[3]
local delta = tonumber(ARGV[4])
local is_settle = ARGV[5] == '1'
local is_release = ARGV[6] == '1'
local n_scopes = tonumber(ARGV[7])
local freed = 0

for i = 1, n_scopes do
  local tpm = tonumber(ARGV[7 + i])
  local ktok, kconc = KEYS[(i - 1) * 2 + 1], KEYS[(i - 1) * 2 + 2]
  if is_settle and tpm > 0 and delta ~= 0 then
    local v = redis.call('HMGET', ktok, 'f', 't')
    local fill = tonumber(v[1]) or 0
    local at = tonumber(v[2]) or now
    local t = math.max(now, at)
    fill = math.max(0, fill - (t - at) * tpm)
    -- A larger actual than estimated leaves debt that later requests wait out.
    fill = math.max(0, fill + delta * window)
    if fill > 0 then
      redis.call('HSET', ktok, 'f', fill, 't', t)
      redis.call('PEXPIRE', ktok, math.ceil(fill / tpm) + 1000)
    else
      redis.call('DEL', ktok)
    end
  end
  if is_release then
    freed = freed + redis.call('ZREM', kconc, request_id)
  end
end
return freed
