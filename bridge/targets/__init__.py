"""Targets: where settings go. One module per kind of host (REAPER OSC, AbletonOSC, MIDI CC).

Every target is an `OutputTarget` (bridge.targets.base): `submit(params)` from the engine thread
records what should be set; a sender thread per target sends only what changed since the last
send, the latest value wins within a burst, and sends are spaced by the target's `min_interval`.
"""

from bridge.targets.base import OutputTarget

__all__ = ["OutputTarget"]
