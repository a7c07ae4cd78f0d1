-- wrk script for benchmarks/bench_server.py: full REST turns of the reference assistant, or
-- the bare endpoint, closed loop or paced.
--
--   TAIWA_WRK_MODE=taiwa TAIWA_WRK_RATE=0 wrk -t T -c C -d 5s -s benchmarks/wrk_turns.lua URL
--
-- (environment variables, not script arguments: wrk decides whether a script paces before it
-- hands the arguments over.)
-- MODE "taiwa": request i of a thread goes to conversation (i mod 1000) of that thread, at
-- step floor(i / 1000) of the script below, so every conversation plays the script in order
-- and consecutive messages of one conversation are 1000 requests apart (never in flight at
-- once with C <= 1000). MODE "bare": the same small JSON body every time.
-- RATE: messages per second for this thread (the caller divides the total by T); 0 = closed
-- loop (a connection sends again as soon as it has its answer). Paced, the thread hands out
-- send slots 1/RATE apart to whichever connection is free: a send that finds its slot already
-- more than 2 ms past counts as late, so a saturated server shows up as late sends instead of
-- hiding behind latencies measured from the delayed send (coordinated omission).

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } taiwa_timespec;
int clock_gettime(int clk_id, taiwa_timespec *tp);
]])
local ts = ffi.new("taiwa_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local SCRIPT = {
  "hi", "how do I reset my password?", "check my account", "C12345", "12/04/1990",
  "I want to open a ticket", "the dashboard is slow", '/inform{\\"priority\\": \\"low\\"}', "/deny",
  "thanks", "bye",
}
local CONVERSATIONS = 1000

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local mode = os.getenv("TAIWA_WRK_MODE") or "taiwa"
local rate = tonumber(os.getenv("TAIWA_WRK_RATE") or "0") or 0
local interval = rate > 0 and 1000 / rate or 0
local counter, next_slot = 0, nil
late, worst_late_ms = 0, 0

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local body
  if mode == "bare" then
    body = '{"sender":"bare","message":"hi"}'
  else
    local step = math.floor(counter / CONVERSATIONS)
    body = string.format(
      '{"sender":"w%d-%d-%d","message":"%s"}',
      tid, math.floor(step / #SCRIPT), counter % CONVERSATIONS, SCRIPT[(step % #SCRIPT) + 1]
    )
  end
  counter = counter + 1
  return wrk.format(nil, nil, nil, body)
end

if interval > 0 then
  -- Defined only when pacing: with delay() wrk sends every request from a timer.
  function delay()
    local now = now_ms()
    if next_slot == nil then
      next_slot = now
    end
    local slot = next_slot
    next_slot = next_slot + interval
    local wait = slot - now
    if wait < -2 then
      late = late + 1
      if -wait > worst_late_ms then
        worst_late_ms = -wait
      end
    end
    return wait > 0 and math.floor(wait + 0.5) or 0
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local n_late, worst = 0, 0
  for _, t in ipairs(threads) do
    n_late = n_late + (t:get("late") or 0)
    worst = math.max(worst, t:get("worst_late_ms") or 0)
  end
  io.write(string.format(
    'TAIWA_WRK {"requests":%d,"errors":%d,"seconds":%.3f,"p50_ms":%.3f,"p95_ms":%.3f,"p99_ms":%.3f,'
      .. '"max_ms":%.3f,"late_sends":%d,"worst_late_ms":%.1f}\n',
    summary.requests, e.status + e.connect + e.read + e.write + e.timeout, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, n_late, worst
  ))
end
