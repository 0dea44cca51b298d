#!/usr/bin/env bash
# The GPU check, as is, on any machine with a CUDA GPU (under 8 minutes on a data-centre GPU):
#   bash bench/device_check.sh            # prints one table; the logs and JSON land in $OUT (or a temp folder)
# 1. installs what it needs (a venv from constraints.txt, unless the python it is given already imports
#    torch with CUDA: NST_PYTHON=/path/to/python skips the install);
# 2. runs the test suite's CUDA paths (tests/test_cuda.py: they skip on machines without CUDA);
# 3. runs bench/engine.py and bench/quality.py on cuda at 512 px, fp32 and bf16;
# 4. prints one table: device, dtype, ms per step, the share of the GPU's bf16 peak that implies, and the
#    default job's end-to-end ratio against the seed's loop (bench/device_table.py).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

python=${NST_PYTHON:-}
if [ -z "$python" ]; then
    if python3 -c 'import torch, torchvision, PIL, tqdm, pytest; assert torch.cuda.is_available()' 2>/dev/null; then
        python=python3
    else
        python3 -m venv .venv-device
        .venv-device/bin/python -m pip install --quiet --upgrade pip
        .venv-device/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
        python=.venv-device/bin/python
    fi
fi
"$python" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device visible to torch"; print("device:", torch.cuda.get_device_name(0), "· torch", torch.__version__)'

echo "== CUDA tests"
"$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/tests.log"

echo "== engine step (512 px, 100 steps)"
"$python" bench/engine.py --device cuda --size 512 --steps 100 2>&1 | tee "$out/engine.log"

for precision in fp32 bf16; do
    echo "== whole jobs at 512 px, $precision"
    "$python" bench/quality.py --device cuda --sizes 512 --pairs examples,generated --runs 3 --reference-runs 1 \
        --variants default --precision "$precision" --json "$out/quality-$precision.json" 2>&1 | tee "$out/quality-$precision.log"
done

echo "== the table"
"$python" bench/device_table.py "$out"/quality-fp32.json "$out"/quality-bf16.json | tee "$out/table.md"
