-- eqbridge: shared helpers for the REAPER scripts (no extensions needed; calls `eqbridge send`).
-- The command can be changed per machine: Extensions > ... or run once in the ReaScript console:
--   reaper.SetExtState("eqbridge", "command", "/home/me/.local/bin/eqbridge", true)
local M = {}

function M.is_windows()
  local os_name = reaper.GetOS()
  return os_name:match("^Win") ~= nil
end

-- Quote one argument for the shell that ExecProcess uses.
function M.quote(s)
  if M.is_windows() then
    return '"' .. s:gsub('"', '""') .. '"'
  end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

function M.command()
  local c = reaper.GetExtState("eqbridge", "command")
  if c == nil or c == "" then c = "eqbridge" end
  return c
end

-- Run `eqbridge send ARGS...`; returns ok, output. ExecProcess returns "exitcode\noutput".
function M.send(args, timeout_ms)
  local parts = { M.command(), "send" }
  for _, a in ipairs(args) do parts[#parts + 1] = M.quote(a) end
  local cmd = table.concat(parts, " ")
  local result = reaper.ExecProcess(cmd, timeout_ms or 5000)
  if result == nil then return false, "could not run: " .. cmd end
  local code, output = result:match("^(%-?%d+)\n?(.*)$")
  if code == nil then return false, result end
  return tonumber(code) == 0, output
end

-- Send, and on failure tell the user why in a message box. Returns "sent" or "error".
function M.send_or_explain(args, failure)
  local sent, output = M.send(args)
  if not sent then
    reaper.ShowMessageBox(failure .. ":\n" .. (output or ""), "eqbridge", 0)
    return "error"
  end
  return "sent"
end

return M
