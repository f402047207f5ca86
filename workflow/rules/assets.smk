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


rule hub_snapshot:
    """Every hub id the run reads, downloaded once into hub.cache where the hub is reachable (the
    login node): the other jobs run offline (lsap.snapshot). Only in the DAG of configs with hub ids."""
    output:
        layout.hub_manifest(RUN),
    params:
        lsap=LSAP_ONLINE,
        config=CONFIG,
        key=keys.digest([spec for _, _, spec in lsap_hub.specs(config)] + [config["hub"], config["evaluation"]]),
    log:
        f"{R}/logs/hub_snapshot.log",
    conda:
        ENV
    shell:
        "{params.lsap} hub-snapshot --config {params.config} --out {output} > {log} 2>&1"
