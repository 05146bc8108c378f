"""The differential fuzzer: random step sequences, well-formed and mutated, run through the
Python core here and the TypeScript core in a Node child process
(``js/build/test/scenario-worker.js --worker``); every step's output must agree.

``tests/protocol/test_differential.py`` runs a bounded batch in CI. A longer run, on demand::

    python -m tests.fuzz_scenarios --count 20000 --seconds 600 [--seed N]

Each difference is printed as a scenario (the steps up to the first one that differs,
with the Python core's outcomes as expectations), ready to be reviewed and added to
``vectors/scenarios/``: whatever the fuzzer finds becomes a scenario.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .scenarios import ROOT, Runner, expand

WORKER = ROOT / "js" / "build" / "test" / "scenario-worker.js"

#: State read after every step, on both sides.
CHECKS: dict[str, Any] = {
    "open_streams": None,
    "buffered_received": None,
    "connection": None,
    "deadline": None,
    "can_open": None,
    "resumable": None,
    "position": None,
    "state": {str(sid): None for sid in range(1, 7)},
    "credit": {str(sid): None for sid in range(7)},
}


class Generator:
    """Random scenarios that keep a connection alive long enough to matter: the peer
    mostly follows the protocol (stream ids of its parity in order, DATA on streams that
    exist, credit within range), with a few mutated frames and garbage messages."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.peer_ids: list[int] = []
        self.our_ids: list[int] = []
        self.next_peer = 1
        self.resume = False
        self.next_ours = 2

    def size(self) -> int:
        return self.rng.choice([40, 41, 60, 100, 300, 1000, 1000, 5000, 16384, 20000, 70000])

    def message(self, sid: int) -> dict[str, Any]:
        r = self.rng
        if sid and r.random() < 0.3:
            return {"$msg": {"jsonrpc": "2.0", "id": r.randint(1, 9), "result": {}}}
        spec: dict[str, Any] = {"$size": self.size()}
        if sid:
            spec["$id"] = r.randint(1, 9)
        return spec

    def data(self, type_: int, sid: int) -> list[list[Any]]:
        """One message on a stream, whole or in fragments, END sometimes."""
        r = self.rng
        end = sid != 0 and r.random() < 0.4  # END on stream 0 is a connection error
        if type_ == 2 and sid and r.random() < 0.1:
            return [[2, sid, 1, {"$hex": ""}]]  # a bare END
        spec = self.message(sid)
        if "$size" not in spec or (spec["$size"] <= 16384 and r.random() < 0.7):
            return [[type_, sid, 1 if end else 0, spec]]
        size = spec["$size"]
        points = {0, size, *range(16384, size, 16384)}  # frames within the smallest limit
        points |= {r.randint(1, size - 1) for _ in range(r.randint(1, 3))}
        cuts = sorted(points)
        frames = []
        for n, (a, b) in enumerate(itertools.pairwise(cuts)):
            last = b == size
            flags = (1 if end else 0) if last else 2
            frames.append([type_ if n == 0 else 2, sid, flags, {**spec, "$slice": [a, b]}])
        return frames

    def any_id(self) -> int:
        r = self.rng
        pool = self.peer_ids + self.our_ids
        if r.random() < 0.97:
            return r.choice(pool) if pool else 0
        return r.choice([0, self.next_peer, self.next_ours, 2147483647])

    def frames(self) -> list[list[Any]]:
        r = self.rng
        if self.resume and r.random() < 0.2:
            return [self.resume_frame()]
        kind = r.choices(
            ["open", "data", "data0", "credit", "cancel", "ping", "ack", "goaway", "unknown"],
            weights=[25, 30, 8, 12, 6, 6, 3, 2, 2],
        )[0]
        if kind == "open":
            sid = self.next_peer
            self.next_peer += 2
            self.peer_ids.append(sid)
            return self.data(1, sid)
        if kind == "data":
            pool = self.peer_ids + self.our_ids
            return self.data(2, r.choice(pool) if pool else 0)
        if kind == "data0":
            return self.data(2, 0)
        if kind == "credit":
            sid = r.choice([0, *self.our_ids]) if r.random() < 0.9 else self.any_id()
            return [[4, sid, 0, r.choice([1, 100, 5000, 16384, 65536, 262144])]]
        if kind == "cancel":
            return [
                [
                    3,
                    self.any_id() or 1,
                    0,
                    r.choice([0, 2, 6, 7, 8, 99]),
                    r.choice(["", "stop", "é" * 140]),
                ]
            ]
        if kind == "ping":
            return [[5, 0, 0, r.randint(0, 2**40)]]
        if kind == "ack":
            return [[5, 0, 1, r.randint(1, 4)]]
        if kind == "goaway":
            last = max(self.our_ids, default=0)
            return [
                [
                    6,
                    0,
                    0,
                    r.choice([0, last, last + 2]),
                    r.choice([0, 0, 0, 2, 9]),
                    r.choice(["", "bye"]),
                ]
            ]
        return [[r.randint(7, 20), 0, 0]]

    def resume_frame(self) -> list[Any]:
        """Section 9: positions on CREDIT and PING, bare acknowledgements, and the HELLO
        that answers a resume (or a second one, where none is awaited)."""
        r = self.rng
        position = r.choice([0, 1, 2, 3, 5, 64, "x"])
        kind = r.choice(["ack", "credit", "ping", "hello", "refused"])
        if kind == "ack":
            return [4, 0, 0, 0, position]
        if kind == "credit":
            return [4, r.choice([0, *self.our_ids]), 0, r.choice([1, 5000]), position]
        if kind == "ping":
            return [5, 0, r.choice([0, 1]), r.randint(1, 3), position]
        if kind == "hello":
            answer = {"token": "t9", "grace": 60, "received": r.choice([0, 1, 2, 5])}
            return [0, 0, 0, {"resume": answer}]
        return [0, 0, 0, {"resume": {"refused": "no such session to resume"}}]

    def mutate(self, frame: list[Any]) -> list[Any]:
        r = self.rng
        frame = list(frame)
        frame[r.randrange(len(frame))] = r.choice(
            [None, True, -1, "x", 1.5, [], {}, 2**40, 3, {"$hex": "c1"}, {"$zeros": 2}]
        )
        if r.random() < 0.3:
            frame = frame[: r.randint(0, len(frame))]
        return frame

    def settings(self) -> dict[str, Any]:
        r = self.rng
        out: dict[str, Any] = {}
        if r.random() < 0.5:
            out["max_streams"] = r.choice([1, 2, 3, 128])
        if r.random() < 0.5:
            out["initial_window"] = r.choice([16384, 20000, 65536, 262144])
        if r.random() < 0.3:
            out["connection_window"] = r.choice([16384, 65536, 4194304])
        if r.random() < 0.3:
            out["max_frame_size"] = r.choice([16384, 65536])
        if r.random() < 0.3:
            out["max_message_size"] = r.choice([1024, 8192, 16777216])
        if r.random() < 0.3:
            out["ping_interval"] = r.choice([0, 1, 10])
        return out

    def steps(self) -> list[dict[str, Any]]:
        """One verb, or frames received in as many WebSocket messages as keep each under
        the smallest legal limit."""
        r = self.rng
        roll = r.random()
        if roll < 0.55:
            frames = [f for _ in range(r.choice([1, 1, 1, 2, 3])) for f in self.frames()]
            if r.random() < 0.03:
                at = r.randrange(len(frames))
                frames[at] = self.mutate(frames[at])
            messages: list[list[Any]] = [[]]
            size = 0
            for frame in frames:
                length = payload_length(frame)
                if messages[-1] and size + length > 16000:
                    messages.append([])
                    size = 0
                messages[-1].append(frame)
                size += length
            return [{"do": "receive", "frames": message} for message in messages]
        if roll < 0.555:
            raw = bytes(r.randrange(256) for _ in range(r.randint(0, 12)))
            return [{"do": "receive", "hex": raw.hex()}]
        return [self.verb()]

    def verb(self) -> dict[str, Any]:
        r = self.rng
        verb = r.choices(
            [
                "open",
                "send",
                "end",
                "consume",
                "cancel",
                "close",
                "ping",
                "advance",
                "lost",
                "text",
                "suspend",
                "begin_resume",
                "resume_accepted",
            ],
            weights=[
                20,
                20,
                6,
                30,
                5,
                2,
                3,
                8,
                0.5,
                0.5,
                *([3, 3, 3] if self.resume else [0, 0, 0]),
            ],
        )[0]
        sid = self.any_id()
        match verb:
            case "open":
                self.our_ids.append(self.next_ours)
                self.next_ours += 2
                return {"do": "open", "message": self.message(1), "end": r.random() < 0.5}
            case "send":
                return {
                    "do": "send",
                    "stream": sid,
                    "message": self.message(sid),
                    "end": r.random() < 0.4,
                }
            case "end":
                return {"do": "end", "stream": sid}
            case "consume":
                return {
                    "do": "consume",
                    "stream": sid,
                    "bytes": r.choice([25, 40, 41, 60, 100, 300, 1000, 5000]),
                }
            case "cancel":
                return {"do": "cancel", "stream": sid, "code": r.choice([2, 7]), "reason": "fuzz"}
            case "close":
                return {"do": "close", "code": r.choice([0, 0, 0, 2]), "reason": "fuzz"}
            case "advance":
                return {"do": "advance", "seconds": r.choice([0.5, 1, 5, 10, 30])}
            case "resume_accepted":
                return {"do": verb, "received": r.choice([0, 1, 2, 4, 9]), "token": "t8"}
        return {"do": verb}

    def scenario(self, index: int) -> dict[str, Any]:
        r = self.rng
        role = r.choice(["client", "server"])
        self.peer_ids, self.our_ids = [], []
        self.next_peer, self.next_ours = (2, 1) if role == "client" else (1, 2)
        scenario: dict[str, Any] = {
            "name": f"fuzz-{index}",
            "about": "found by the differential fuzzer",
            "role": role,
            "settings": self.settings(),
            "limits": {
                "ping_burst": r.choice([2, 50]),
                "useless_frame_burst": r.choice([3, 500]),
                "cancel_burst": r.choice([2, 500]),
            },
            "steps": [],
        }
        # Resume (section 9) in a third of them: offered by this side, and most often
        # taken up in the peer's HELLO.
        self.resume = r.random() < 0.33
        if self.resume:
            ours = {} if role == "client" else {"token": "t0", "grace": 60, "node": "n"}
            scenario["resume"] = ours
        if r.random() < 0.95:
            scenario["peer"] = self.settings()
            if self.resume and r.random() < 0.8:
                peer = {"token": "t1", "grace": 30} if role == "client" else {}
                scenario["peer"]["resume"] = peer
        scenario["steps"] = [step for _ in range(r.randint(1, 40)) for step in self.steps()]
        return scenario


def payload_length(frame: list[Any]) -> int:
    """About how many bytes a frame's payload spec stands for."""
    spec = frame[3] if len(frame) > 3 and isinstance(frame[3], dict) else {}
    if "$slice" in spec:
        return int(spec["$slice"][1] - spec["$slice"][0])
    return int(spec.get("$size", 50))


def normalized(outcome: dict[str, Any]) -> dict[str, Any]:
    """An outcome with the free-text reasons of a side's own errors taken out."""
    sends = []
    for sent in outcome["sends"]:
        frame = list(sent)
        if frame and frame[0] == 3 and len(frame) > 4:
            frame[4] = "*"
        if frame and frame[0] == 6 and len(frame) > 5:
            frame[5] = "*"
        sends.append(frame)
    events = [
        {k: v for k, v in e.items() if not (k == "reason" and e.get("remote") is False)}
        for e in outcome["events"]
    ]
    return {**outcome, "sends": sends, "events": events}


def python_outcomes(scenario: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    runner = Runner(scenario)
    outcomes = []
    try:
        for step in expand(scenario):
            done = runner.step(step)
            outcomes.append(
                {
                    "sends": done.frames,
                    "events": done.events,
                    "returns": done.returned,
                    "raises": done.raised,
                    "check": done.checks,
                }
            )
    except Exception as exc:  # anything escaping the core (McpWsError is caught by step)
        return outcomes, f"{type(exc).__name__}: {exc}"
    return outcomes, None


@contextmanager
def typescript() -> Iterator[subprocess.Popen[str]]:
    """The Node worker, fed one scenario per line."""
    if not WORKER.exists():
        raise FileNotFoundError(f"{WORKER} is missing: run `npm run pretest` in js/ first")
    process = subprocess.Popen(
        ["node", str(WORKER), "--worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=WORKER.parent,
    )
    try:
        yield process
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def compare(scenario: dict[str, Any], node: subprocess.Popen[str]) -> dict[str, Any] | None:
    """Run one scenario on both sides; ``None`` if they agree, else a report."""
    with_checks = {**scenario, "steps": [{**s, "check": CHECKS} for s in scenario["steps"]]}
    ours, our_crash = python_outcomes(with_checks)
    assert node.stdin is not None
    node.stdin.write(json.dumps(with_checks) + "\n")
    node.stdin.flush()
    assert node.stdout is not None
    theirs = json.loads(node.stdout.readline())
    steps = expand(scenario)
    for index, (a, b) in enumerate(zip(ours, theirs["outcomes"], strict=False)):
        if normalized(a) != normalized(b):
            return report(scenario, steps, index, ours, f"python {a}\n typescript {b}")
    if our_crash or theirs["crash"] or len(ours) != len(theirs["outcomes"]):
        index = min(len(ours), len(theirs["outcomes"]))
        return report(
            scenario, steps, index, ours, f"python {our_crash}, typescript {theirs['crash']}"
        )
    return None


def report(
    scenario: dict[str, Any],
    steps: list[dict[str, Any]],
    index: int,
    ours: list[dict[str, Any]],
    why: str,
) -> dict[str, Any]:
    """The scenario cut after the first differing step, Python's outcomes as expectations."""
    skip = len(steps) - len(scenario["steps"])
    kept = []
    for position, original in enumerate(steps[skip : index + 1], start=skip):
        step = dict(original)
        if position < len(ours):
            outcome = normalized(ours[position])
            for key in ("sends", "events"):
                if outcome[key]:
                    step[key] = outcome[key]
            if outcome["returns"] is not None:
                step["returns"] = outcome["returns"]
            if outcome["raises"]:
                step["raises"] = outcome["raises"]
        kept.append(step)
    return {"scenario": {**scenario, "steps": kept}, "difference": why}


def fuzz(count: int, seconds: float, seed: int) -> tuple[int, list[dict[str, Any]]]:
    """Up to ``count`` scenarios or ``seconds`` of running, whichever ends first: how
    many ran, and the differences."""
    generator = Generator(random.Random(seed))
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    ran = 0
    with typescript() as node:
        for index in range(count):
            if time.monotonic() > deadline:
                break
            difference = compare(generator.scenario(index), node)
            ran += 1
            if difference is not None:
                found.append(difference)
    return ran, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args(argv)
    started = time.monotonic()
    ran, found = fuzz(args.count, args.seconds, args.seed)
    for difference in found:
        print(json.dumps(difference["scenario"]))
        print("#", difference["difference"], file=sys.stderr)
    print(
        f"seed {args.seed}: {len(found)} differences in {time.monotonic() - started:.0f} s "
        f"({ran} scenarios)",
        file=sys.stderr,
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
