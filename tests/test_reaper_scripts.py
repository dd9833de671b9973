"""The REAPER scripts' logic, run by a Lua interpreter against a stand-in `reaper` table."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lua() -> str:
    for name in ("lua5.4", "lua54", "lua"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Lua interpreter (apt-get install -y lua5.4) to run the REAPER scripts' tests")


def test_reaper_scripts_with_a_stand_in_reaper():
    proc = subprocess.run([lua(), str(ROOT / "tests" / "lua" / "test_reaper_scripts.lua"),
                           str(ROOT / "scripts" / "reaper") + "/"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all ok" in proc.stdout


def test_the_command_line_the_script_builds_parses_as_a_phrase():
    from bridge.cli import send
    p = argparse.ArgumentParser()
    send.register(p.add_subparsers())
    args = p.parse_args(["send", "--", "-3 dB at 200 Hz, less harsh"])
    assert args.phrase == "-3 dB at 200 Hz, less harsh"
    args = p.parse_args(["send", "--undo"])
    assert args.undo and args.phrase is None
