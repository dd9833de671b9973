-- eqbridge: undo the last eqbridge change (the daemon keeps the history; REAPER's own undo is untouched).
-- Install like eqbridge_phrase.lua (Actions > Load ReaScript...), keep eqbridge_common.lua beside it.
local dir = ({ reaper.get_action_context() })[2]:match("^(.*[/\\])") or ""
local common = dofile(dir .. "eqbridge_common.lua")

local M = {}

function M.run()
  return common.send_or_explain({ "--undo" }, "eqbridge undo failed")
end

if not EQBRIDGE_TEST then M.run() end
return M
