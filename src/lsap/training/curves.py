"""A run's training curve as TensorBoard event files (`training.tensorboard`): every numeric field
of each log.jsonl record at its step, through torch's own writer, so `tensorboard --logdir
results/<run>/students` shows every student's loss, learning rate, gradient norm and throughput
side by side. log.jsonl stays the record the tables read; these are a copy for the viewer. A
resumed run purges what a killed one wrote past its resume step, so each step appears once."""

from __future__ import annotations

from pathlib import Path

FOLDER = "tensorboard"
NOT_CURVES = ("step", "total_steps", "time")   # the x axis and the wall clock, not curves


class Curves:
    def __init__(self, out: Path, enabled: bool, step: int):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

            # a resumed run logs again from step + 1 (a record's step counts the steps done): what a
            # killed run wrote from there on is purged, as TensorBoard's purge_step means it
            self.writer = SummaryWriter(str(Path(out) / FOLDER), purge_step=step + 1 if step else None)

    def add(self, record: dict) -> None:
        if self.writer is None:
            return
        for name, value in record.items():
            if name not in NOT_CURVES and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"train/{name}", value, record["step"], walltime=record["time"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
