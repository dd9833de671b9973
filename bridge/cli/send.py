"""`eqbridge send`: a one-shot OSC client for shells and scripts (talks to `eqbridge serve`)."""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
import time

from bridge.errors import ConfigError
from bridge.osc_in import DEFAULT_OSC_PORT, build_message
from bridge.text import MAX_PHRASE_CHARS
from bridge.udp_address import port_number


OPTIONS = ("amount", "macro", "nudge", "macro_name", "keep", "teach", "undo", "redo", "reset", "bypass", "target",
           "status", "ping", "get")
"""The message options (argparse dests), one of which replaces a PHRASE."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "send", help="send a phrase or a knob move to a running `eqbridge serve`",
        description="Send one message to the daemon and print its answer. Exit 0 when it was "
                    "accepted and sent on, 1 when it was refused, did not reach the EQ or nothing answered.")
    p.add_argument("phrase", nargs="?", help="a phrase, e.g. \"warmer, less muddy\" (/eqbridge/text)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--amount", type=float, metavar="V", help="0..1 (/eqbridge/amount)")
    g.add_argument("--macro", nargs=2, metavar=("N", "V"), help="macro N to V in 0..1, 0.5 neutral")
    g.add_argument("--nudge", nargs=2, metavar=("KNOB", "D"),
                   help="add D (-1..1) to KNOB, amount or a macro number (an encoder's step)")
    g.add_argument("--macro-name", type=int, metavar="N", help="print what macro knob N does")
    g.add_argument("--keep", action="store_true",
                   help="this is what I meant: keep the current phrase and curve in your profile")
    g.add_argument("--teach", metavar="NAME", help="name the current sound, e.g. \"my vocal air\"")
    g.add_argument("--undo", action="store_true")
    g.add_argument("--redo", action="store_true")
    g.add_argument("--reset", action="store_true")
    g.add_argument("--bypass", type=int, choices=(0, 1), metavar="0|1")
    g.add_argument("--target", nargs="+", metavar="ARG", help="NAME, or DAW TRACK FX [MAPPING]")
    g.add_argument("--status", action="store_true", help="print the daemon's status as JSON")
    g.add_argument("--ping", action="store_true")
    g.add_argument("--get", action="store_true", help="print the current curve and params")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=DEFAULT_OSC_PORT, help=f"daemon OSC port (default {DEFAULT_OSC_PORT})")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer (default 2)")
    p.add_argument("--no-wait", action="store_true", help="send and exit without waiting for an answer")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.set_defaults(func=run)


def _message(args: argparse.Namespace) -> tuple[str, list, str]:
    """(address, args, reply address to wait for)."""
    change = "/eqbridge/params"
    if args.amount is not None:
        return "/eqbridge/amount", [float(args.amount)], change
    if args.macro:
        try:
            n, v = int(args.macro[0]), float(args.macro[1])
        except ValueError:
            raise SystemExit("eqbridge send: --macro takes a number N and a value V") from None
        return f"/eqbridge/macro/{n}", [v], change
    if args.nudge:
        knob, d = args.nudge
        try:
            path = "/eqbridge/amount" if knob == "amount" else f"/eqbridge/macro/{int(knob)}"
            return f"{path}/nudge", [float(d)], change
        except ValueError:
            raise SystemExit("eqbridge send: --nudge takes amount or a macro number, and a change D") from None
    if args.macro_name is not None:
        return f"/eqbridge/macro/{args.macro_name}/name", [], f"/eqbridge/macro/{args.macro_name}/name"
    if args.keep:
        return "/eqbridge/keep", [], "/eqbridge/kept"
    if args.teach is not None:
        return "/eqbridge/teach", [args.teach], "/eqbridge/taught"
    for flag in ("undo", "redo", "reset"):
        if getattr(args, flag):
            return f"/eqbridge/{flag}", [], change
    if args.bypass is not None:
        return "/eqbridge/bypass", [int(args.bypass)], change
    if args.target:
        vals: list = [args.target[0]]
        for x in args.target[1:3]:
            vals.append(int(x) if x.lstrip("-").isdigit() else x)
        vals += args.target[3:4]
        return "/eqbridge/target", vals, "/eqbridge/status"
    if args.status:
        return "/eqbridge/status", [], "/eqbridge/status"
    if args.ping:
        return "/eqbridge/ping", [], "/eqbridge/pong"
    if args.get:
        return "/eqbridge/get", [], change
    if args.phrase is not None:
        return "/eqbridge/text", [args.phrase], change
    raise SystemExit(f"eqbridge send: give a PHRASE or one of {', '.join('--' + o.replace('_', '-') for o in OPTIONS)}")


def _port(text: str) -> int:
    """--port for argparse: a clear usage error, not a traceback from sendto."""
    try:
        return port_number(text, "the daemon's OSC port")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _send_failure(exc: OSError, size: int, host: str, port: int) -> tuple[str, int]:
    """What to print, and the exit code, when the message could not even leave this machine:
    too big for one datagram is the caller's input (2); an unknown host or a down network, 1."""
    if exc.errno == errno.EMSGSIZE:
        return (f"the message is {size} bytes, more than one UDP datagram carries "
                f"(a phrase is at most {MAX_PHRASE_CHARS} characters)", 2)
    return f"cannot send to {host}:{port}: {exc.strerror or exc}", 1


def run(args: argparse.Namespace) -> int:
    from pythonosc.osc_message import OscMessage

    if args.phrase is not None and any(getattr(args, k) not in (None, False) for k in OPTIONS):
        print("eqbridge send: give either a PHRASE or one option", file=sys.stderr)
        return 2
    address, values, wait_for = _message(args)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        dgram = build_message(address, values)
        try:
            sock.sendto(dgram, (args.host, args.port))
        except OSError as exc:
            why, rc = _send_failure(exc, len(dgram), args.host, args.port)
            print(f"eqbridge send: error: {why}", file=sys.stderr)
            return rc
        if args.no_wait:
            return 0
        deadline = time.monotonic() + args.timeout
        got: dict[str, list] = {}
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data, _ = sock.recvfrom(65535)
            except (socket.timeout, ConnectionRefusedError):
                continue
            try:
                msg = OscMessage(data)
            except Exception:
                continue
            got[msg.address] = list(msg.params)
            if msg.address == "/eqbridge/error":
                print(f"eqbridge send: error: {msg.params[0] if msg.params else '?'}", file=sys.stderr)
                return 1
            if msg.address == wait_for:
                return _print(args, msg.address, got)
        print(f"eqbridge send: no answer from {args.host}:{args.port} within {args.timeout:g} s "
              "(is `eqbridge serve` running?)", file=sys.stderr)
        return 1
    finally:
        sock.close()


def _print(args: argparse.Namespace, address: str, got: dict[str, list]) -> int:
    if address == "/eqbridge/pong":
        print("pong")
        return 0
    if address in ("/eqbridge/kept", "/eqbridge/taught") or address.endswith("/name"):
        value = str(got[address][0]) if got[address] else ""
        if args.json:
            print(json.dumps({"address": address, "value": value}))
        else:
            print({"/eqbridge/kept": "kept: ", "/eqbridge/taught": "taught: "}.get(address, "") + value)
        return 0
    if address == "/eqbridge/status":
        status = json.loads(got[address][0])
        print(json.dumps(status, indent=None if args.json else 2))
        return 0
    curve = [float(x) for x in got.get("/eqbridge/curve", [])]
    flat = got.get("/eqbridge/params", [])
    params = {str(k): float(v) for k, v in zip(flat[0::2], flat[1::2])}
    if args.json:
        print(json.dumps({"curve_db": curve, "params": params}))
    else:
        span = f"{min(curve):+.1f}..{max(curve):+.1f} dB" if curve else "no curve"
        print(f"ok: curve {span} over 40 bands; {len(params)} parameters set")
    return 0
