"""The priced DAG (lsap.operations.forecast.price) as `lsap plan` prints it: one Markdown table
(a data job's parts collapsed to one line), the totals (FLOPs, GPU time, disk) and the warnings."""

from __future__ import annotations


def _fmt(v, unit=1.0, digits=2) -> str:
    return "—" if v is None else f"{v / unit:,.{digits}f}"


def _request(sl: dict) -> str:
    if sl.get("local"):
        return "local rule"
    parts = [sl.get("slurm_partition", "?")]
    if "gpus" in sl:
        parts.append(f"{sl.get('nodes', 1)} node, {sl['gpus']} GPU × {sl.get('cpus_per_gpu', 1)} CPU, "
                     f"{sl.get('mem_mb', 0) // 1000} GB")
    else:
        parts.append(f"{sl.get('cpus_per_task', 1)} CPU, {sl.get('mem_mb', 0) // 1000} GB")
    return ", ".join(parts + [f"{sl.get('runtime', '?')} min"])


def disk_total(priced: dict) -> float:
    """GB on disk when every job has run (the resume states included)."""
    return sum(j.get("disk_gb") or 0 for j in priced["jobs"])


def render(priced: dict) -> str:
    """The plan as a Markdown table (data parts collapsed to one line each), its totals and warnings."""
    big = max((j["tokens"] or 0) for j in priced["jobs"]) >= 1e9
    unit, uname = (1e9, "B") if big else (1e6, "M")
    gpu_h = sum(j.get("gpu_hours") or 0 for j in priced["jobs"])
    # a sweep of minutes (gpu-small) is priced in GPU-minutes, a cluster sweep in GPU-hours
    g_unit, g_name = (1.0, "GPU-h") if gpu_h >= 1 else (1 / 60, "GPU-min")
    lines = [f"Plan of `{priced['config']}`. Data: " + ", ".join(
        f"{s} {_fmt(d['tokens'], unit)} {uname} tokens" for s, d in priced["data"].items())
        + f" ({next(iter(priced['data'].values()))['source']}).", f"GPU time at {priced['rates']['gpu']}; "
        f"data-prep CPU time at {priced['rates']['cpu']}.", "",
        f"| job | what | tokens ({uname}) | FLOPs | epochs | {g_name} | CPU-h | est. memory (GB) | disk (GB) "
        f"| Slurm request |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    rows, seen = [], {}
    for j in priced["jobs"]:
        if j["job"] in ("corpus_part", "shards_part", "selection_part"):
            what = j["method"].split(" ")[0] if j["job"] != "corpus_part" else ""
            key = (j["job"], what)
            if key in seen:
                seen[key]["n"] += 1
                continue
            j = seen.setdefault(key, {**j, "n": 1})
        rows.append(j)
    for j in rows:
        what = j["method"] if "n" not in j else f"{j['n']} jobs" + (f", {j['method'].split(' ')[0]}"
                                                                    if j["job"] != "corpus_part" else "")
        req = _request(j["slurm"])
        per = " each" if "n" in j else ""
        lines.append(f"| {j['job']} | {what} | {_fmt(j.get('tokens'), unit)}{per} | "
                     f"{'—' if j.get('flops') is None else format(j['flops'], '.3g') + per} | {_fmt(j.get('epochs'))} | "
                     f"{_fmt(j.get('gpu_hours'), g_unit, 1 if g_unit == 1 else 2)}{per if j.get('gpu_hours') else ''} | "
                     f"{_fmt(j.get('cpu_hours'), 1, 2)}{per if j.get('cpu_hours') else ''} | "
                     f"{_fmt(j.get('memory_gb'), 1, 1)} | {_fmt(j.get('disk_gb'), 1, 1)}{per if j.get('disk_gb') else ''} | "
                     f"{req} |")
    total = f"{gpu_h:,.0f} GPU-hours" if g_unit == 1 else f"{gpu_h * 60:.1f} GPU-minutes"
    lines += ["", f"Total: {total} over {sum(j['job'] == 'student' for j in priced['jobs'])} "
                  f"student runs and the jobs above. Disk: {disk_total(priced) / 1e3:,.2f} TB of outputs "
                  f"in all, which is also the peak (no stage deletes what an earlier one wrote)."]
    if snap := priced.get("hub_snapshot"):
        lines.append(f"Hub snapshot (the hub_snapshot rule, on the login node, before any cluster job): {snap['ids']} "
                     f"hub ids into {snap['cache']}, ≈ {snap['weights_gb']:,.0f} GB of model weights (bf16) and "
                     f"≈ {snap['text_gb']:,.0f} GB of dataset text the corpus parts read (uncompressed; the files "
                     "download compressed), plus lm-eval's task datasets; its manifest gives the real bytes.")
    f, local = priced["fixed_costs"], [j for j in priced["jobs"] if j["slurm"].get("local")]
    lines.append(f"Training jobs' wall time adds each save (resume state, checkpoints) at {f['write_bytes_per_s'] / 1e9:g}"
                 f" GB/s and {f['start_up_s']['gpu'] / 60:g} min of start-up (assumed). Local rules (login node): at most "
                 f"{max(j['cpu_hours'] for j in local) * 60:.1f} CPU-min each, bound {priced['local_bound_cpu_min']:g}.")
    if priced["hub_configs_from_table"]:
        lines.append("Hub out of reach: shapes of " + ", ".join(priced["hub_configs_from_table"])
                     + " from config/hub_models.yaml.")
    lines += [f"WARNING: {w}" for w in priced["warnings"]]
    return "\n".join(lines) + "\n"
