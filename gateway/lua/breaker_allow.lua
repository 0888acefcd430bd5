-- Circuit breaker transition (allow); see gateway/breaker.py for the hash layout.
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'state', 'open_until_ms', 'timeout_ms',
                     'probe_token', 'probe_until_ms', 'failures')
if h[1] ~= 'open' then return {'closed', 0, tonumber(h[6] or '0')} end
local open_until = tonumber(h[2])
if now < open_until then return {'open', open_until, 0} end
local probe_until = tonumber(h[5] or '0')
if h[4] and now < probe_until then return {'probing', probe_until, 0} end
redis.call('HSET', KEYS[1], 'probe_token', ARGV[2], 'probe_until_ms', now + tonumber(ARGV[3]))
return {h[4] and 'probe_after_lapsed_lease' or 'probe', open_until, tonumber(h[3])}
