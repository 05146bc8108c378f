"""The shared behaviour scenarios (``vectors/scenarios/*.json``) run against
``mcp_ws.protocol``; ``js/test/scenarios.test.ts`` runs the same files against the
TypeScript core. The format is documented in ``vectors/README.md``: this module and that
test are its two readers, and they must stay line for line alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from mcp_ws.protocol import Connection as Core
from mcp_ws.protocol import (
    ConnectionTerminated,
    CreditGranted,
    ErrorCode,
    Event,
    GoAwayReceived,
    HelloReceived,
    InvalidMessageReceived,
    Limits,
    McpWsError,
    MessageReceived,
    PingAcknowledged,
    Role,
    Settings,
    StreamCancelled,
    StreamEnded,
    StreamOpened,
)
from mcp_ws.protocol.events import LinkLost, Resumed
from mcp_ws.protocol.resume import ResumeHello

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "vectors" / "scenarios"

#: The wildcard: an expected value that matches anything.
ANY = "*"


def load(directory: Path = SCENARIOS) -> list[dict[str, Any]]:
    """Every scenario, in file order, each with its ``id`` (``area/name``)."""
    found: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.json")):
        document = json.loads(path.read_text())
        for scenario in document["scenarios"]:
            found.append({**scenario, "id": f"{path.stem}/{scenario['name']}"})
    return found


def pack(value: Any) -> bytes:
    return bytes(msgpack.packb(value, use_bin_type=True))


def message_of_size(size: int, rid: Any = None) -> dict[str, Any]:
    """A JSON-RPC message whose MessagePack form is exactly ``size`` bytes: a
    notification (or a request with ``rid``) of method "x" padded with "a"s."""

    def build(pad: int) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0"}
        if rid is not None:
            message["id"] = rid
        message["method"] = "x"
        message["params"] = {"p": "a" * pad}
        return message

    pad = max(size - len(pack(build(0))), 0)
    while pad >= 0:
        length = len(pack(build(pad)))
        if length == size:
            return build(pad)
        if length < size:
            break
        pad -= length - size
    raise ValueError(f"no message of exactly {size} bytes")


def is_bin_spec(value: Any) -> bool:
    return isinstance(value, dict) and any(key.startswith("$") for key in value)


def bin_of(spec: dict[str, Any]) -> bytes:
    """The bytes a ``{"$...": ...}`` spec stands for (vectors/README.md, "Payloads")."""
    if "$hex" in spec:
        return bytes.fromhex(spec["$hex"])
    if "$zeros" in spec:
        return bytes(spec["$zeros"])
    data = pack(message_of(spec))
    if "$slice" in spec:
        start, end = spec["$slice"]
        data = data[start:end]
    return data


def message_of(spec: dict[str, Any]) -> dict[str, Any]:
    """The JSON-RPC message a ``{"$msg": ...}`` or ``{"$size": N, "$id": ...}`` spec names."""
    if "$msg" in spec:
        return dict(spec["$msg"])
    return message_of_size(spec["$size"], spec.get("$id"))


def value_of(value: Any) -> Any:
    """A frame field as given in a scenario, with bin specs turned into bytes."""
    if is_bin_spec(value):
        return bin_of(value)
    if isinstance(value, list):
        return [value_of(item) for item in value]
    return value


def render_frames(messages: list[bytes]) -> list[list[Any]]:
    """What a side sent, as frames: bin fields become ``{"$len": N}``."""
    frames: list[list[Any]] = []
    for message in messages:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(message)
        for frame in unpacker:
            frames.append([{"$len": len(f)} if isinstance(f, bytes) else f for f in frame])
    return frames


def render_event(event: Event) -> dict[str, Any]:
    """An event in the neutral form both runners produce."""
    if isinstance(event, HelloReceived):
        return {"event": "hello"}
    if isinstance(event, StreamOpened):
        return {"event": "opened", "stream": event.stream_id}
    if isinstance(event, MessageReceived):
        rendered: dict[str, Any] = {
            "event": "message",
            "stream": event.stream_id,
            "size": event.flow_controlled_length,
        }
        for key in ("id", "method"):
            if key in event.message:
                rendered[key] = event.message[key]
        return rendered
    if isinstance(event, InvalidMessageReceived):
        return {"event": "invalid", "stream": event.stream_id}
    if isinstance(event, StreamEnded):
        return {"event": "ended", "stream": event.stream_id}
    if isinstance(event, StreamCancelled):
        return {
            "event": "cancelled",
            "stream": event.stream_id,
            "code": int(event.error_code),
            "remote": event.remote,
            "reason": event.reason,
        }
    if isinstance(event, CreditGranted):
        return {"event": "credit", "stream": event.stream_id, "increment": event.increment}
    if isinstance(event, PingAcknowledged):
        return {"event": "ping_ack", "opaque": event.opaque}
    if isinstance(event, GoAwayReceived):
        return {"event": "goaway", "last_stream": event.last_stream_id, "reason": event.reason}
    if isinstance(event, ConnectionTerminated):
        rendered = {
            "event": "terminated",
            "code": int(event.error_code),
            "remote": event.remote,
            "close_code": event.close_code,
            "last_stream": event.last_stream_id,
            "reason": event.reason,
        }
        if event.session_lost:
            rendered["session_lost"] = True
        return rendered
    if isinstance(event, Resumed):
        return {"event": "resumed", "resent": event.resent}
    if isinstance(event, LinkLost):
        return {"event": "link_lost"}
    raise AssertionError(f"no neutral form for {event!r}")


def matches(expected: Any, actual: Any) -> bool:
    """``expected`` matches ``actual``: equal, with ``"*"`` matching anything and a
    missing ``reason`` key in an expected map matching any reason."""
    if expected == ANY:
        return True
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual  # 15 and 15.0 are the same number in JSON
    if isinstance(expected, dict) and isinstance(actual, dict):
        keys = set(actual) - ({"reason"} - set(expected))
        return set(expected) == keys and all(matches(expected[k], actual[k]) for k in keys)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(matches, expected, actual))
    return type(expected) is type(actual) and expected == actual


@dataclass
class Outcome:
    """What one step did: the frames sent after it, its events, its return value and
    the name of what it raised."""

    frames: list[list[Any]]
    events: list[dict[str, Any]]
    returned: Any = None
    raised: str | None = None
    checks: dict[str, Any] = field(default_factory=dict)


class Runner:
    """One side of a scenario: the core, its fake clock, and the verbs of the format."""

    def __init__(self, scenario: dict[str, Any]) -> None:
        self.now = 0.0
        wire = dict(scenario.get("settings", {}))
        if "extensions" in wire:
            wire["extensions"] = tuple(wire["extensions"])
        resume = scenario.get("resume")
        self.core = Core(
            Role(scenario["role"]),
            Settings(**wire),
            limits=Limits(**scenario.get("limits", {})),
            clock=lambda: self.now,
            resume=ResumeHello(**resume) if resume is not None else None,
        )

    def verb(self, step: dict[str, Any]) -> tuple[list[Event], Any]:
        """Run one step's verb: the events it returned and its return value."""
        core = self.core
        sid = step.get("stream", 0)
        match step["do"]:
            case "start" | "flush":
                return [], None
            case "receive":
                if "hex" in step:
                    data = bytes.fromhex(step["hex"])
                else:
                    data = b"".join(pack(value_of(frame)) for frame in step["frames"])
                return core.receive_data(data), None
            case "text":
                return core.receive_text(), None
            case "open":
                return [], core.open_stream(message_of(step["message"]), end=step.get("end", False))
            case "send":
                core.send_message(sid, message_of(step["message"]), end=step.get("end", False))
                return [], None
            case "end":
                core.end_stream(sid)
                return [], None
            case "consume":
                return [], core.acknowledge_received(sid, step["bytes"])
            case "cancel":
                core.cancel_stream(sid, ErrorCode(step.get("code", 7)), step.get("reason", ""))
                return [], None
            case "close":
                core.close(ErrorCode(step.get("code", 0)), step.get("reason", ""))
                return [], None
            case "ping":
                return [], core.ping()
            case "advance":
                self.now += step["seconds"]
                return core.tick(), None
            case "lost":
                return core.connection_lost(), None
            case "suspend":
                core.suspend()
                return [], None
            case "begin_resume":
                core.begin_resume()
                return [], None
            case "resume_accepted":
                core.resume_accepted(step["received"], token=step["token"])
                return [], None
        raise AssertionError(f"unknown verb {step['do']!r}")

    def step(self, step: dict[str, Any]) -> Outcome:
        events: list[Event] = []
        returned: Any = None
        raised: str | None = None
        try:
            events, returned = self.verb(step)
        except McpWsError as exc:
            raised = type(exc).__name__
        return Outcome(
            frames=render_frames(self.core.data_to_send()),
            events=[render_event(event) for event in events],
            returned=returned,
            raised=raised,
            checks={name: self.check(name, step["check"][name]) for name in step.get("check", {})},
        )

    def check(self, name: str, expected: Any) -> Any:
        """The value of one ``check`` after a step, in the scenario's terms."""
        core = self.core
        if name == "state":
            return {
                sid: (state.name.lower() if (state := core.stream_state(int(sid))) else None)
                for sid in expected
            }
        if name == "credit":
            return {sid: core.available_credit(int(sid)) for sid in expected}
        if name == "buffered_received":
            return core.buffered_received
        if name == "open_streams":
            return core.open_stream_count
        if name == "can_open":
            return core.can_open_stream
        if name == "connection":
            return core.state.name.lower()
        if name == "deadline":
            return core.next_deadline()
        if name == "resumable":
            return core.resumable
        if name == "position":
            return core.received_position
        raise AssertionError(f"unknown check {name!r}")


def expand(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps, with the scenario's shorthands written out: the first step collects
    our HELLO (``start``, unless it is null), and ``peer`` receives the peer's HELLO with those settings."""
    steps: list[dict[str, Any]] = []
    if scenario.get("start", []) is not None:  # null: the first step finds HELLO unsent
        steps.append({"do": "start", "sends": scenario.get("start", [[0, 0, 0, ANY]])})
    if "peer" in scenario:
        steps.append(
            {
                "do": "receive",
                "frames": [[0, 0, 0, scenario["peer"]]],
                "events": [{"event": "hello"}],
            }
        )
    return steps + list(scenario["steps"])


def run(scenario: dict[str, Any]) -> list[str]:
    """Run a scenario; the differences from its expectations, one line each (none: it
    passed). The run stops at the first step that differs."""
    runner = Runner(scenario)
    for index, step in enumerate(expand(scenario)):
        outcome = runner.step(step)
        where = f"step {index} ({step['do']})"
        problems = []
        if outcome.raised != step.get("raises"):
            problems.append(f"{where}: raised {outcome.raised}, expected {step.get('raises')}")
        if "returns" in step and not matches(step["returns"], outcome.returned):
            problems.append(f"{where}: returned {outcome.returned!r}, expected {step['returns']!r}")
        if not matches(step.get("sends", []), outcome.frames):
            problems.append(f"{where}: sent {json.dumps(outcome.frames)}")
        if not matches(step.get("events", []), outcome.events):
            problems.append(f"{where}: events {json.dumps(outcome.events)}")
        for name, value in outcome.checks.items():
            if not matches(step["check"][name], value):
                problems.append(f"{where}: {name} is {json.dumps(value)}")
        if problems:
            return problems
    return []
