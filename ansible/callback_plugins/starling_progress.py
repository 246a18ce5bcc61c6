# A line per poll of rollout.yml's swarm watch (the "Watch the swarm ..." task), where
# Ansible alone prints only "FAILED - RETRYING": peers complete, peers fetching, the bytes
# the peers hold and the rate they grow at, all from the tracker's scrape (the bytes as
# each peer last announced, so they move in steps of the announce interval). Loaded
# because it sits beside the playbook; it changes nothing else in the output.
from __future__ import annotations

import json
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: starling_progress
    type: aggregate
    short_description: progress lines of a Starling rollout
    description:
      - Prints the swarm's state (from the tracker's scrape) at every poll of rollout.yml's watch task.
"""

WATCH_TASK = "Watch the swarm"


def mib(n: float) -> str:
    return f"{n / 1048576:.0f} MiB"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "starling_progress"
    CALLBACK_NEEDS_ENABLED = False

    def __init__(self) -> None:
        super().__init__()
        self._started: float | None = None
        self._last: tuple[float, int] | None = None

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        if task.get_name().startswith(WATCH_TASK):
            self._started = time.monotonic()
            self._last = None

    def v2_runner_retry(self, result) -> None:
        if not result._task.get_name().startswith(WATCH_TASK) or self._started is None:
            return
        now = time.monotonic()
        elapsed = f"starling rollout [{now - self._started:5.1f} s]"
        lines = result._result.get("stdout_lines", [])
        peers = next((int(l.strip()[6:]) for l in lines if l.startswith("peers=") and l.strip()[6:].isdigit()), None)
        try:
            swarm = json.loads(next(l for l in lines if l.startswith("{")))
        except (StopIteration, ValueError):
            self._display.display(f"{elapsed}: the tracker does not answer yet")
            return
        completed, leechers = int(swarm.get("completed", 0)), int(swarm.get("leechers", 0))
        line = f"{elapsed}: {completed} of {peers if peers is not None else '?'} peers complete, {leechers} fetching"
        size, left = swarm.get("size"), swarm.get("left")
        if isinstance(size, int) and isinstance(left, int) and peers:
            held = (completed + leechers) * size - left
            line += f", {mib(held)} of {mib(peers * size)}"
            if self._last is not None and now > self._last[0]:
                line += f", {(held - self._last[1]) / (now - self._last[0]) / 1048576:.1f} MiB/s"
            self._last = (now, held)
        self._display.display(line)
