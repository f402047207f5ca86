"""Running the DAG where it runs: pricing before launch (forecast), the offline paper
rehearsal, the GPU draw (device pack, in-process sweep, limits), the bench, recovery."""
