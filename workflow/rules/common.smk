# Helpers shared by the rule files: which assets a stage reads, and per-section hashes so a
# rule reruns when (and only when) its own config sections change.


def asset_markers(names):
    return [f"resources/{name}/.verified" for name in names]


def corpus_assets():
    return sorted({s["asset"] for d in config["corpus"]["domains"].values()
                   for s in d["sources"] if "asset" in s})


def tokenizer_assets(role):
    spec = config["tokenizers"][role]
    if spec["kind"] != "pretrained":
        return []
    from lsap.vocab import PRETRAINED

    return [PRETRAINED[spec["name"]][0]]


def section(*keys):
    return lsap_config.section_hash(config, *keys)
