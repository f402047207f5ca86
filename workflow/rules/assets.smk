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
