"""`eqbridge serve`: run the bridge daemon (OSC and MIDI in, the DAW's own EQ out)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

from bridge.errors import EqBridgeError
from bridge.udp_address import PeerAddress

SIGNAL_POLL_S = 0.1
"""How often the main thread looks whether SIGINT or SIGTERM came (the handler only records it)."""

LOG_LEVELS = ("debug", "info", "warning", "error")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="run the bridge: words and knobs over OSC/MIDI drive your DAW's EQ",
        description="Run the eqbridge daemon. With no flags and no config file it listens for OSC on "
                    "127.0.0.1:9031 and drives REAPER's OSC surface on 127.0.0.1:8000 (track 1, FX 1, "
                    "mapping reaper-reaeq). The OSC address table is in docs/osc.md.")
    p.add_argument("--config", metavar="FILE", help="YAML config: targets, ports, MIDI maps (see bridge/config.py)")
    p.add_argument("--osc-port", type=int, metavar="N", help="OSC listen port (default 9031)")
    p.add_argument("--osc-host", metavar="ADDR", help="OSC listen address (default 127.0.0.1; others need osc.allow)")
    p.add_argument("--reaper", metavar="HOST:PORT", help="drive REAPER's OSC surface at HOST:PORT (default port 8000)")
    p.add_argument("--reaper-real-units", action="store_true",
                   help="REAPER: send ReaEQ's real-unit OSC (/track/T/fxeq/band/B/freq/hz, gain/db, q/oct)")
    p.add_argument("--reaper-per-message", action="store_true",
                   help="REAPER: one datagram per parameter value instead of OSC bundles (the default), "
                        "for a receiver that cannot read bundles")
    p.add_argument("--reaper-follow", metavar="FX",
                   help="REAPER: drive the first FX whose name holds FX (e.g. ReaEQ) on the track selected in "
                        "REAPER, read from its OSC feedback on port 9000 (the surface's device port)")
    p.add_argument("--ableton", metavar="HOST:PORT", help="drive Ableton Live through AbletonOSC (default port 11000)")
    p.add_argument("--track", type=int, metavar="T", help="track (REAPER: 1-based, 0 = master; Live: 0-based)")
    p.add_argument("--fx", type=int, metavar="F", help="FX slot (REAPER: 1-based) or device index (Live: 0-based)")
    p.add_argument("--mapping", metavar="NAME|PATH", help="plugin mapping (mappings/*.yaml name or a path)")
    p.add_argument("--feedback", action="append", metavar="HOST:PORT",
                   help="also send /eqbridge/curve and /eqbridge/params here (repeatable)")
    p.add_argument("--midi-in", metavar="SUBSTRING", help="MIDI input port name substring (with midi.map in the config)")
    p.add_argument("--midi-feedback", metavar="SUBSTRING",
                   help="MIDI output port name substring: the knobs' values go back to the controller "
                        "(LED rings, motor faders) in midi.map's encodings")
    p.add_argument("--midi-backend", metavar="NAME", help="mido backend, e.g. mido.backends.rtmidi/UNIX_JACK")
    p.add_argument("--profile", metavar="NAME",
                   help="the user's preference profile (default: config key `profile`, else 'default'); "
                        "kept phrases and taught names live in <state dir>/profiles/NAME.sqlite3 "
                        "or $EQBRIDGE_PROFILE_DIR")
    p.add_argument("--check", action="store_true", help="validate the config and print what it would connect to, then exit")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="default: info")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    from bridge.config import load_config, with_overrides

    cfg = load_config(args.config)
    return with_overrides(cfg, osc_host=args.osc_host, osc_port=args.osc_port, reaper=args.reaper,
                          ableton=args.ableton, track=args.track, fx=args.fx, mapping=args.mapping,
                          feedback=args.feedback, midi_input=args.midi_in, midi_backend=args.midi_backend,
                          midi_feedback=getattr(args, "midi_feedback", None),
                          profile=getattr(args, "profile", None),
                          reaper_real_units=getattr(args, "reaper_real_units", False),
                          reaper_per_message=getattr(args, "reaper_per_message", False),
                          reaper_follow=getattr(args, "reaper_follow", None))


def host_problem(host: str, port: int) -> str | None:
    """Why datagrams to host:port cannot be addressed, or None. The daemon itself keeps running
    with such a target (it retries; the host may come up later), so only --check can say it."""
    try:
        PeerAddress(host, port).resolve()
    except OSError as exc:
        return str(exc)
    return None


def check(cfg) -> int:
    """Print the plan; load each target's mapping so a typo fails here, not at the first phrase."""
    print(f"config: {cfg.source}")
    print(f"OSC in: udp {cfg.osc_host}:{cfg.osc_port}" + (f" (allow {', '.join(cfg.allow)})" if cfg.allow else ""))
    problems = 0
    for h, p in cfg.feedback:
        line = f"feedback: {h}:{p}"
        if unresolved := host_problem(h, p):
            line += f"  ERROR: {unresolved}"
            problems += 1
        print(line)
    try:
        from bridge.mapping import load_mapping
    except Exception as exc:  # pragma: no cover - before the mapping module lands
        load_mapping = None
        print(f"mappings: cannot check ({exc})")
    for i, t in enumerate(cfg.targets):
        mark = "active" if i == 0 else "ready"
        line = f"target ({mark}): {t.describe()}"
        if load_mapping is not None:
            try:
                m = load_mapping(t.mapping)
                line += f" [{len(m.bands)} bands]"
            except EqBridgeError as exc:
                line += f"  ERROR: {exc}"
                problems += 1
        if t.daw != "midi" and (unresolved := host_problem(t.host, t.port)):
            line += f"  ERROR: {unresolved}"
            problems += 1
        print(line)
    if cfg.midi_input:
        print(f"MIDI in: port matching {cfg.midi_input!r}" + (f" via {cfg.midi_backend}" if cfg.midi_backend else ""))
        for b in cfg.midi_map:
            ch = f"channel {b.channel}" if b.channel else "any channel"
            how = f", relative {b.relative}" if b.relative else ", pickup" if b.pickup else ""
            print(f"  {b.kind} {b.number} ({ch}{how}) -> {b.control}")
    if cfg.midi_feedback:
        print(f"MIDI feedback: the knobs' values to a port matching {cfg.midi_feedback!r}")
    print(f"knob moves: answered by {'the fit tangent, polished at rest' if cfg.knob_answers == 'tangent' else 'a warm refit each'}")
    print(f"state: {cfg.data_dir()}")
    try:
        from bridge.daemon_profile import profile_location
        print(f"profile: {cfg.profile} ({profile_location(cfg.profile, cfg.data_dir())})")
    except EqBridgeError as exc:
        print(f"profile: {cfg.profile}  ERROR: {exc}")
        problems += 1
    return 2 if problems else 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = build_config(args)
    if args.check:
        return check(cfg)
    from bridge.config import ConfigError
    from bridge.daemon import Daemon

    # A handler runs between two bytecodes of the main thread, which may hold a lock just then (an
    # Event's condition, the logging lock): it must take none. Setting a threading.Event here
    # deadlocked a daemon once (two SIGTERMs while its main thread re-took the lock in Event.wait).
    signalled: list[int] = []

    def on_signal(signum, frame):  # noqa: ARG001
        signalled.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    daemon = Daemon(cfg)
    try:
        daemon.start()
    except OSError as exc:
        daemon.stop()
        raise ConfigError(f"cannot listen on {cfg.osc_host}:{cfg.osc_port}: {exc.strerror or exc}") from None
    try:
        while not signalled:
            time.sleep(SIGNAL_POLL_S)
        logging.getLogger("eqbridge").info("signal %d: shutting down", signalled[0])
    finally:
        daemon.stop()
    return 0
