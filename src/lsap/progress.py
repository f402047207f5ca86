"""How a training run reports progress: a bar on a terminal; in a redirected log (every job's),
one timestamped line every `every_s` seconds and at every validation, with the step of the total,
the loss, tokens/s and the time left, so a job can be watched with `tail -f`."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, start: int, enabled: bool, every_s: float = 30.0, stream=None):
        self.total, self.start, self.enabled, self.every_s = total, start, enabled, every_s
        self.stream = stream or sys.stderr
        self.t0 = self.t_last = time.monotonic()
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=self.stream)

    def update(self, record: dict) -> None:
        """After each step, with its log record (step, loss parts, tok_s, val_loss when measured)."""
        if not self.enabled:
            return
        loss = record.get("loss", record.get("ce"))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}" if loss is not None else "-", tok_s=f"{record['tok_s']:,.0f}")
            return
        now = time.monotonic()
        step = record["step"]
        if now - self.t_last < self.every_s and "val_loss" not in record and step != self.total:
            return
        self.t_last = now
        per_step = (now - self.t0) / max(step - self.start, 1)
        left = per_step * (self.total - step)
        parts = "".join(f" | {name} {record[key]:.4f}" for key, name in (("ce", "ce"), ("aux_nll", "aux"), ("kl", "kl"),
                                                                          ("val_loss", "val_loss")) if key in record)
        lr = f" | lr {record['lr']:.3g}" if "lr" in record else ""
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [train] step {step}/{self.total} "
              f"({100 * step / self.total:.1f} %) | loss {loss if loss is None else f'{loss:.4f}'}{parts}{lr} | "
              f"{record['tok_s']:,.0f} tok/s | elapsed {(now - self.t0) / 60:.1f} min | eta {left / 60:.1f} min",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
