# Pinned registry assets (config/assets.yaml) -> resources/<name>/, verified by sha256. Shared by
# every run: the job reads only the asset's manifest entry, never a run's config.


rule asset:
    output:
        "resources/{asset}/.verified",
    params:
        lsap=LSAP,
        key=lambda w: keys.digest(lsap_assets.manifest_entry(w.asset)),
    log:
        "resources/.logs/{asset}.log",
    conda:
        ENV
    shell:
        "{params.lsap} assets --name {wildcards.asset} > {log} 2>&1"


# The hub read in two snapshots with their own keys (lsap.keys): what the data and the models need
# (the corpus parts take its manifest as input, so every later job follows it) and lm-eval's task
# datasets (only the evaluations take that one): an edit under `evaluation:` re-snapshots nothing
# the data, the references or the students read.
EVAL_HUB_MANIFEST = [lsap_snapshot.eval_manifest(RUN)] if HUB_MANIFEST and config["evaluation"]["source"] == "lm_eval" \
    else []


rule hub_snapshot:
    """Every dataset, tokenizer and model the run reads from the hub, downloaded once into hub.cache
    where the hub is reachable (the login node), at the commits of the config's lock (lsap.io.pin): the
    other jobs run offline (lsap.io.snapshot). Only in the DAG of configs with hub ids."""
    output:
        layout.hub_manifest(RUN),
    params:
        lsap=LSAP_ONLINE,
        config=CONFIG,
        key=keys.key(config, "hub_snapshot"),
    log:
        f"{R}/logs/hub_snapshot.log",
    conda:
        ENV
    shell:
        "{params.lsap} hub-snapshot --config {params.config} --what data --out {output} > {log} 2>&1"


rule hub_snapshot_eval:
    """lm-eval's task datasets (evaluation.source: lm_eval), into the datasets cache the evaluations
    read offline. Only in the DAG of configs with hub ids that evaluate with lm-eval's own tasks."""
    output:
        lsap_snapshot.eval_manifest(RUN),
    params:
        lsap=LSAP_ONLINE,
        config=CONFIG,
        key=keys.key(config, "hub_snapshot_eval"),
    log:
        f"{R}/logs/hub_snapshot_eval.log",
    conda:
        ENV
    shell:
        "{params.lsap} hub-snapshot --config {params.config} --what evaluation --out {output} > {log} 2>&1"
