"""training/shard.py: a checkpoint folder into files under a size limit and back, byte for byte; a
missing or altered part and an existing target are refused."""
import json
import shutil
from pathlib import Path

import pytest

from objaudio_rt.core.errors import ObjaudioError
from training.shard import join, main, split

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "objaudio_rt" / "assets" / "tiny-synth"


def test_the_embedded_checkpoint_splits_under_16_mib_and_joins_back_byte_for_byte(tmp_path):
    assert main(["split", str(CKPT), str(tmp_path / "parts"), "--max-mib", "15"]) == 0
    sizes = [p.stat().st_size for p in (tmp_path / "parts").rglob("*") if p.is_file()]
    assert max(sizes) <= 15 * 2**20 and (CKPT / "unet.safetensors").stat().st_size > 16 * 2**20
    assert (tmp_path / "parts" / "unet.safetensors.part001").is_file()
    assert main(["join", str(tmp_path / "parts"), str(tmp_path / "back")]) == 0
    for f in CKPT.rglob("*"):
        if f.is_file():
            assert (tmp_path / "back" / f.relative_to(CKPT)).read_bytes() == f.read_bytes(), f


def test_a_missing_or_altered_part_and_an_existing_target_are_refused(tmp_path):
    src = tmp_path / "ckpt"
    src.mkdir()
    (src / "big.bin").write_bytes(bytes(range(256)) * 20)            # 5120 bytes: 5 parts of 1 KiB
    (src / "small.json").write_text("{}")
    manifest = split(src, tmp_path / "parts", 1024)
    assert len(manifest["files"]["big.bin"]["parts"]) == 5
    altered = tmp_path / "altered"
    shutil.copytree(tmp_path / "parts", altered)
    (altered / "big.bin.part002").write_bytes(b"x" * 1024)
    with pytest.raises(ObjaudioError, match="do not give the file"):
        join(altered, tmp_path / "a")
    (altered / "big.bin.part002").unlink()
    with pytest.raises(ObjaudioError, match="missing big.bin.part002"):
        join(altered, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    (tmp_path / "c").mkdir()
    with pytest.raises(ObjaudioError, match="exists"):
        join(tmp_path / "parts", tmp_path / "c")
    m = json.loads((tmp_path / "parts" / "shards.json").read_text())
    m["files"]["../evil"] = m["files"].pop("small.json")
    (tmp_path / "parts" / "shards.json").write_text(json.dumps(m))
    with pytest.raises(ObjaudioError, match="outside the folder"):
        join(tmp_path / "parts", tmp_path / "d")
