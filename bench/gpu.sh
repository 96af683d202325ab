#!/usr/bin/env bash
# The layouts table of BENCHMARKS.md ("Layouts on 2 cores") measured on an NVIDIA GPU, from a checkout:
#
#     bench/gpu.sh                         # tiny.en and base, 6 calls of 2-5 minutes, every layout twice
#     MODELS=base REPEAT=1 bench/gpu.sh    # fewer runs
#
# Creates .venv if there is none (PYTHON picks the interpreter, 3.11 or later), installs the project into it,
# checks that CTranslate2 sees a GPU and can decode float16 on it, then runs bench/layouts.py with the settings
# WHISPER_DEVICE=cuda gives the product (device cuda, compute type float16; the same decode path as on CPU),
# and the batched layout with a larger batch (BATCH_SIZE, default 16; the CPU table uses 8).
# Writes bench/results/layouts.<model>.cuda.json and prints one markdown table per model.
# Needs espeak-ng (the test speech). No other bench takes a device: completeness.py and pipeline_vs_raw.py
# decode on the CPU by construction, so they are not run here.
# If the GPU's cuBLAS 12 / cuDNN 9 libraries are missing, it installs them from PyPI into .venv (as faster-whisper's
# README says) unless CUDA_LIBS_FROM_PIP=0.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "bench/gpu.sh: $*" >&2
    exit 1
}

MODELS=${MODELS:-"tiny.en base"}
CALLS=${CALLS:-6}
MINUTES=${MINUTES:-3.5}
REPEAT=${REPEAT:-2}
BATCH_SIZE=${BATCH_SIZE:-16}
PYTHON=${PYTHON:-python3}

command -v nvidia-smi >/dev/null 2>&1 || fail "no NVIDIA GPU visible: nvidia-smi is not on PATH (no driver here); run this on a machine with one"
nvidia-smi -L >/dev/null 2>&1 || fail "no NVIDIA GPU visible: 'nvidia-smi -L' fails: $(nvidia-smi -L 2>&1 | head -n 1)"
command -v espeak-ng >/dev/null 2>&1 || fail "espeak-ng is missing: the test calls are spoken by it (apt-get install espeak-ng)"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv || fail "could not create .venv with $PYTHON (set PYTHON to a Python 3.11+)"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e . || fail "'pip install -e .' failed (see above)"

count=$(.venv/bin/python -c 'import ctranslate2; print(ctranslate2.get_cuda_device_count())' 2>/dev/null || echo 0)
[ "$count" -gt 0 ] || fail "no NVIDIA GPU visible to CTranslate2: ctranslate2.get_cuda_device_count() is 0 (check the driver, CUDA_VISIBLE_DEVICES)"

probe() {  # load tiny.en in float16 on the GPU and decode a second of silence: finds missing cuBLAS/cuDNN now
    .venv/bin/python - <<'EOF'
import numpy as np
from faster_whisper import WhisperModel
from transcriber.model_store import resolve_model

model = WhisperModel(resolve_model("tiny.en", None), device="cuda", compute_type="float16")
list(model.transcribe(np.zeros(16000, dtype=np.float32))[0])
EOF
}

cuda_lib_path() {
    .venv/bin/python -c 'import os, nvidia.cublas.lib as b, nvidia.cudnn.lib as d; print(os.path.dirname(b.__file__) + ":" + os.path.dirname(d.__file__))'
}

if ! probe 2>/tmp/gpu-probe.$$; then
    [ "${CUDA_LIBS_FROM_PIP:-1}" != 0 ] || fail "CTranslate2 sees $count GPU(s) but cannot decode float16 on them: $(tail -n 1 /tmp/gpu-probe.$$)"
    echo "bench/gpu.sh: float16 decode failed ($(tail -n 1 /tmp/gpu-probe.$$)); installing cuBLAS 12 and cuDNN 9 from PyPI into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check nvidia-cublas-cu12 'nvidia-cudnn-cu12==9.*' || fail "could not install nvidia-cublas-cu12 / nvidia-cudnn-cu12 (offline?)"
    LD_LIBRARY_PATH="$(cuda_lib_path)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
    probe 2>/tmp/gpu-probe.$$ || fail "CTranslate2 sees $count GPU(s) but cannot decode float16 on them: $(tail -n 1 /tmp/gpu-probe.$$)"
fi
rm -f /tmp/gpu-probe.$$

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for model in $MODELS; do
    echo "== $model" >&2
    .venv/bin/python bench/layouts.py --model "$model" --device cuda --compute-type float16 \
        --batch-size "$BATCH_SIZE" --calls "$CALLS" --minutes "$MINUTES" --repeat "$REPEAT"
done
