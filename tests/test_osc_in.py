"""OSC in over real loopback UDP: the address table, argument checks, and robustness."""

from __future__ import annotations

import queue
import random
import struct
import time
from pathlib import Path

import pytest

from bridge.osc_in import (ADDRESSES, BY_PATH, MAX_STRING_CHARS, ArgError, OscServer, check_args, decode_knob,
                           knob_table, render_markdown)
from peers import UdpPeer, build

ROOT = Path(__file__).resolve().parents[1]


def test_docs_are_generated_from_the_table():
    assert (ROOT / "docs" / "osc.md").read_text(encoding="utf-8") == render_markdown(), \
        "docs/osc.md is stale: run `python -m bridge.osc_in > docs/osc.md`"


def test_table_has_the_issue_addresses():
    paths = {a.path for a in ADDRESSES}
    for p in ("/eqbridge/text", "/eqbridge/amount", "/eqbridge/macro/1", "/eqbridge/macro/2",
              "/eqbridge/macro/3", "/eqbridge/undo", "/eqbridge/redo", "/eqbridge/reset",
              "/eqbridge/bypass", "/eqbridge/target", "/eqbridge/ping", "/eqbridge/status"):
        assert p in paths
    assert len(paths) == len(ADDRESSES)


def _full_parse(dgram: bytes):
    """What the full path (python-osc's parser, then our argument checks) makes of a datagram."""
    from pythonosc.osc_packet import OscPacket
    msg = OscPacket(dgram).messages[0].message
    addr = BY_PATH[msg.address]
    return addr.event, addr.fixed[:1] + check_args(addr, list(msg.params))


def test_knob_shortcut_decodes_what_the_full_parse_does():
    table = knob_table(ADDRESSES)
    assert {kind for kind, _ in table.values()} == {"amount", "macro"}
    rng = random.Random(3)
    knob_paths = [a.path for a in ADDRESSES if a.event in ("amount", "macro") and not a.relative]
    values = [0.0, 1.0, 0.5, 1e-30, 0.9999999] + [rng.random() for _ in range(200)]
    for path in knob_paths:
        for v in values:
            d = build(path, float(v))
            assert decode_knob(d, table) == _full_parse(d)
    # anything else is left to the full path (which answers errors): other types, ranges, lengths
    others = [build("/eqbridge/amount", 1), build("/eqbridge/amount", 1.5), build("/eqbridge/amount", -0.0001),
              build("/eqbridge/amount", float("nan")), build("/eqbridge/amount", float("inf")),
              build("/eqbridge/amount", 0.5, 0.5), build("/eqbridge/amount", "0.5"), build("/eqbridge/amount"),
              build("/eqbridge/text", "warm"), build("/eqbridge/amount/nudge", 0.5), build("/eqbridge/macro/99", 0.5), build("/eqbridge/amount", 0.5)[:-1],
              build("/eqbridge/amount", 0.5) + b"\0\0\0\0", b"", b"\0\0\0", b"#bundle\0" + bytes(8)]
    for d in others:
        assert decode_knob(d, table) is None, d


@pytest.mark.parametrize("path,values,expect", [
    ("/eqbridge/amount", [0.25], (0.25,)),
    ("/eqbridge/amount", [1], (1.0,)),
    ("/eqbridge/amount/nudge", [-0.25], (-0.25,)),
    ("/eqbridge/macro/2/nudge", [1], (1.0,)),
    ("/eqbridge/bypass", [True], (1,)),
    ("/eqbridge/bypass", [0.0], (0,)),
    ("/eqbridge/target", ["reaper", 2.0, 1], ("reaper", 2, 1)),
    ("/eqbridge/text", ["warm"], ("warm",)),
])
def test_check_args_accepts(path, values, expect):
    assert check_args(BY_PATH[path], values) == expect


@pytest.mark.parametrize("path,values,fragment", [
    ("/eqbridge/amount", [], "takes 1 argument"),
    ("/eqbridge/amount", [0.1, 0.2], "takes 1 argument"),
    ("/eqbridge/amount", ["x"], "must be a number"),
    ("/eqbridge/amount", [1.5], "0..1"),
    ("/eqbridge/amount", [float("nan")], "finite"),
    ("/eqbridge/amount/nudge", [-1.5], "-1..1"),
    ("/eqbridge/text", [3], "must be a string"),
    ("/eqbridge/text", ["x" * (MAX_STRING_CHARS + 1)], "characters"),
    ("/eqbridge/target", ["reaper", 1.5], "whole number"),
    ("/eqbridge/undo", [1], "takes 0 argument"),
])
def test_check_args_refuses_with_reason(path, values, fragment):
    with pytest.raises(ArgError, match=fragment):
        check_args(BY_PATH[path], values)


@pytest.fixture
def server():
    events: queue.SimpleQueue = queue.SimpleQueue()
    srv = OscServer("127.0.0.1", 0, events.put)
    srv.start()
    client = UdpPeer()
    yield srv, events, client
    client.close()
    srv.stop()


def _drain(q):
    out = []
    while not q.empty():
        out.append(q.get())
    return out


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def test_valid_messages_become_events(server):
    srv, events, client = server
    dest = ("127.0.0.1", srv.port)
    client.send(dest, "/eqbridge/text", "warmer, less muddy")
    client.send(dest, "/eqbridge/macro/2", 0.75)
    client.send(dest, "/eqbridge/undo")
    client.send(dest, "/eqbridge/ping")
    client.wait_address("/eqbridge/pong")
    got = [events.get(timeout=10) for _ in range(3)]
    assert [(e.kind, e.args) for e in got] == [("text", ("warmer, less muddy",)), ("macro", (2, 0.75)),
                                                ("undo", ())]
    assert got[0].reply_to == client.addr


def test_bundle_time_tags_do_not_block(server):
    srv, events, client = server
    from pythonosc.osc_bundle_builder import OscBundleBuilder
    from pythonosc.osc_message_builder import OscMessageBuilder
    import time
    far_future = time.time() + 365 * 86400  # a year from now: python-osc's dispatcher would sleep
    bb = OscBundleBuilder(far_future)
    mb = OscMessageBuilder("/eqbridge/amount")
    mb.add_arg(0.3, "f")
    bb.add_content(mb.build())
    client.sock.sendto(bb.build().dgram, ("127.0.0.1", srv.port))
    client.send(("127.0.0.1", srv.port), "/eqbridge/ping")
    client.wait_address("/eqbridge/pong")
    assert events.get(timeout=10).args == pytest.approx((0.3,))


def _bad_datagrams() -> list[tuple[str, bytes]]:
    rng = random.Random(5)
    good = build("/eqbridge/amount", 0.5)
    text = build("/eqbridge/text", "warm")
    cases = [
        ("empty", b""),
        ("truncated float", good[:-2]),
        ("truncated string", text[:-5]),
        ("no type tags comma", _pad(b"/eqbridge/amount") + _pad(b"f") + struct.pack(">f", 0.5)),
        ("wrong type tag", _pad(b"/eqbridge/amount") + _pad(b",s") + _pad(b"loud")),
        ("too many args", build("/eqbridge/amount", 0.5, 0.6)),
        ("too few args", build("/eqbridge/text")),
        ("non-utf8 string", _pad(b"/eqbridge/text") + _pad(b",s") + _pad(b"caf\xe9 \xff\xfe")),
        ("non-utf8 address", _pad(b"/eqbridge/\xff\xfe") + _pad(b",")),
        ("60 kB string", build("/eqbridge/text", "a" * 60_000)),
        ("unknown address", build("/eqbridge/nope", 1)),
        ("unknown root", build("/live/song/get/tempo")),
        ("regex-like address", build("/eqbridge/[", 1)),
        ("bundle garbage", b"#bundle\0" + b"\x00\x00\x00\x00\x00\x00\x00\x01" + b"\x00\x00\x00\x40" + b"/x"),
        ("nan", build("/eqbridge/amount", float("nan"))),
        ("int64 tag", _pad(b"/eqbridge/amount") + _pad(b",h") + struct.pack(">q", 7)),
        ("unclosed array", _pad(b"/eqbridge/amount") + _pad(b",[f") + struct.pack(">f", 0.1)),
    ]
    for i in range(60):
        n = rng.randrange(1, 300)
        cases.append((f"random {i}", bytes(rng.randrange(256) for _ in range(n))))
    for i in range(20):
        cut = rng.randrange(1, len(text))
        cases.append((f"random slash {i}", b"/" + bytes(rng.randrange(256) for _ in range(cut))))
    return cases


def test_bad_input_is_answered_or_dropped_and_ping_still_works(server):
    srv, events, client = server
    dest = ("127.0.0.1", srv.port)
    cases = _bad_datagrams()
    for i, (name, dgram) in enumerate(cases):
        before = srv.counters.received
        errors_before = len([r for r in client.received if r.address == "/eqbridge/error"])
        client.sock.sendto(dgram, dest)
        client.send(dest, "/eqbridge/ping")
        pongs = client.wait_address("/eqbridge/pong", n=i + 1)
        assert len(pongs) == i + 1, f"no pong after {name}"
        assert srv.counters.received >= before + 1 or dgram == b""
        errors = [r for r in client.received if r.address == "/eqbridge/error"]
        # every error reply carries a readable reason
        assert all(isinstance(e.args[0], str) and e.args[0] for e in errors[errors_before:])
    # nothing invalid reached the session
    for ev in _drain(events):
        assert ev.kind in ("amount", "text", "macro", "undo", "redo", "reset", "bypass", "target",
                           "get", "status")
        if ev.kind == "amount":
            assert 0.0 <= ev.args[0] <= 1.0
    reasons = " ".join(r.args[0] for r in client.received if r.address == "/eqbridge/error")
    for fragment in ("malformed", "unknown address", "takes 1 argument", "characters", "must be a number"):
        assert fragment in reasons


def test_non_utf8_is_reported_as_malformed(server):
    srv, events, client = server
    client.sock.sendto(_pad(b"/eqbridge/text") + _pad(b",s") + _pad(b"\xff\xfe\xfd"), ("127.0.0.1", srv.port))
    err = client.wait_address("/eqbridge/error")
    assert "malformed" in err[0].args[0] and "UnicodeDecodeError" in err[0].args[0]
    assert srv.counters.malformed == 1


def test_allow_list_drops_other_senders():
    events: queue.SimpleQueue = queue.SimpleQueue()
    srv = OscServer("127.0.0.1", 0, events.put, allow=["10.9.8.7"])
    srv.start()
    client = UdpPeer()
    try:
        client.send(("127.0.0.1", srv.port), "/eqbridge/amount", 0.5)
        client.send(("127.0.0.1", srv.port), "/eqbridge/ping")
        # nothing comes back and nothing goes through; wait until the server saw both
        deadline = time.monotonic() + 10
        while srv.counters.denied < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert srv.counters.denied == 2
        assert events.empty() and not client.received
    finally:
        client.close()
        srv.stop()
