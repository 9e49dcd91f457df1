"""The demo kind: counts 1..steps (10 by default), one step every DEMO_STEP_DELAY seconds."""

from __future__ import annotations

import time

from shared.kinds import Context, job_kind


def demo_stage(step: int, steps: int) -> str:
    """The stage the demo is in at ``step`` of ``steps``."""
    if step * 5 <= steps:
        return "preparing"
    if step * 5 <= steps * 4:
        return "crunching"
    return "finishing"


@job_kind("demo", title="Demo", description="Counts to ten, one step at a time, logging each step.",
          args={"type": "object", "additionalProperties": False, "properties": {
              "steps": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10,
                        "title": "Steps", "description": "How many steps to count"},
          }})
def demo(ctx: Context, steps: int = 10) -> dict[str, int]:
    """Report ``step of steps`` with a log line for each; the result is the count."""
    delay = float(ctx.config.DEMO_STEP_DELAY)
    for step in range(1, steps + 1):
        time.sleep(delay)
        ctx.log(f"step {step} of {steps} done")
        ctx.progress(step, total=steps, message=f"step {step} of {steps}",
                     stage=demo_stage(step, steps))
    return {"steps": steps}
