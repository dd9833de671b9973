-- eqbridge: describe a sound in words; the running `eqbridge serve` sets the EQ.
-- Install: Actions > Show action list > New action > Load ReaScript..., pick this file
-- (keep eqbridge_common.lua beside it). Needs `eqbridge serve` running and `eqbridge` on PATH.
local dir = ({ reaper.get_action_context() })[2]:match("^(.*[/\\])") or ""
local common = dofile(dir .. "eqbridge_common.lua")

local M = {}

function M.run()
  local last = reaper.GetExtState("eqbridge", "last_phrase") or ""
  local ok, phrase = reaper.GetUserInputs("eqbridge", 1, "Describe the sound:,extrawidth=250", last)
  if not ok then return "cancelled" end
  phrase = phrase:gsub("^%s+", ""):gsub("%s+$", "")
  if phrase == "" then return "empty" end
  reaper.SetExtState("eqbridge", "last_phrase", phrase, true)
  -- "--" ends options, so a phrase that starts with "-" is still a phrase
  return common.send_or_explain({ "--", phrase }, "eqbridge could not set the EQ")
end

if not EQBRIDGE_TEST then M.run() end
return M
