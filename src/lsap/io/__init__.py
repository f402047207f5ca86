"""Bytes in and out: atomic files, the run folder's layout, the embedded registry assets, hub
snapshots and pins, verified checkpoints, stamped log lines. Imports nothing else of lsap."""
