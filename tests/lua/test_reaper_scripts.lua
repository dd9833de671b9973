-- Runs the REAPER scripts against a stand-in `reaper` table (lua5.4 tests/lua/test_reaper_scripts.lua DIR).
local dir = arg[1]
local failures = 0
local function check(cond, msg)
  if not cond then failures = failures + 1; print("FAIL: " .. msg) else print("ok: " .. msg) end
end

local function stub(opts)
  local r = { calls = {}, ext = {}, boxes = {} }
  r.get_action_context = function() return false, dir .. "eqbridge_phrase.lua" end
  r.GetOS = function() return opts.os or "Linux-x86_64" end
  r.GetExtState = function(sec, key) return r.ext[sec .. "/" .. key] or "" end
  r.SetExtState = function(sec, key, v, persist) r.ext[sec .. "/" .. key] = v end
  r.GetUserInputs = function(title, n, captions, default)
    r.asked = { title = title, captions = captions, default = default }
    return opts.ok ~= false, opts.input or ""
  end
  r.ExecProcess = function(cmd, timeout)
    r.calls[#r.calls + 1] = cmd
    return opts.result or "0\nok: curve"
  end
  r.ShowMessageBox = function(msg, title, kind) r.boxes[#r.boxes + 1] = msg; return 1 end
  return r
end

EQBRIDGE_TEST = true
local function load(name, opts)
  reaper = stub(opts)
  return dofile(dir .. name), reaper
end

local M, r = load("eqbridge_phrase.lua", { input = "  warmer, less muddy  " })
check(M.run() == "sent", "phrase is sent")
check(r.calls[1] == "eqbridge send '--' 'warmer, less muddy'", "command line: " .. tostring(r.calls[1]))
check(r.ext["eqbridge/last_phrase"] == "warmer, less muddy", "last phrase remembered")
check(r.asked.captions:match("Describe the sound") ~= nil, "asks for a description")

M, r = load("eqbridge_phrase.lua", { input = "it's \"bright\"; rm -rf /" })
M.run()
check(r.calls[1] == "eqbridge send '--' 'it'\\''s \"bright\"; rm -rf /'", "POSIX quoting: " .. r.calls[1])

M, r = load("eqbridge_phrase.lua", { input = 'say "warm"', os = "Win64" })
M.run()
check(r.calls[1] == 'eqbridge send "--" "say ""warm"""', "Windows quoting: " .. r.calls[1])

M, r = load("eqbridge_phrase.lua", { ok = false })
check(M.run() == "cancelled" and #r.calls == 0, "cancel sends nothing")

M, r = load("eqbridge_phrase.lua", { input = "   " })
check(M.run() == "empty" and #r.calls == 0, "empty phrase sends nothing")

M, r = load("eqbridge_phrase.lua", { input = "warm", result = "1\neqbridge send: refused: unknown words" })
check(M.run() == "error" and r.boxes[1]:match("unknown words") ~= nil, "daemon's refusal is shown")

reaper = stub({})
reaper.ext["eqbridge/command"] = "/opt/eqb/bin/eqbridge"
local common = dofile(dir .. "eqbridge_common.lua")
common.send({ "--ping" })
check(reaper.calls[1] == "/opt/eqb/bin/eqbridge send '--ping'", "command from ExtState")

M, r = load("eqbridge_undo.lua", {})
check(M.run() == "sent" and r.calls[1] == "eqbridge send '--undo'", "undo is sent")
M, r = load("eqbridge_undo.lua", { result = "1\nno answer" })
check(M.run() == "error" and #r.boxes == 1, "undo failure is shown")

if failures > 0 then os.exit(1) end
print("all ok")
