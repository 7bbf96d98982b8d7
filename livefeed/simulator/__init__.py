"""A local server that speaks Douyin's live protocol (room page, enter API, protobuf/gzip push
socket with acks and heartbeats), with realistic Chinese chat, gift streaks, likes, entries
and viewer counts at a chosen rate, and commands to drop the connection, re-send recent
messages, send malformed frames and end the broadcast. The `simulator` platform
(livefeed/clients/simulator.py) follows its rooms; `manage.py live_simulator` runs it; tests
start it in-process (`Simulator`, or `SimulatorThread` for code that runs its own loop).
The HTTP routes and commands are in docs/protocol.md ("Live feed: Douyin", "The simulator").
"""

from livefeed.simulator.room import MALFORMED_KINDS, SimRoom
from livefeed.simulator.server import Simulator, SimulatorThread, running_simulator

__all__ = ["MALFORMED_KINDS", "SimRoom", "Simulator", "SimulatorThread", "running_simulator"]
