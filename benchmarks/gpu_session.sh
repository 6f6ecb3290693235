#!/usr/bin/env bash
# One call on the lent GPU for the paper's-network A/B (benchmarks/gpu_knet_ab.py), logs back in $OUT.
#
# Before the call, here (the GPU machine has no pycocotools and no network):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl pycocotools
# then run, with carry [".whl"] and timeout_s about 600:
#   bash benchmarks/gpu_session.sh
# which checks issue 31's CPU finding at the demo recipe: the paper's network with K-Net's head as it is
# (baseline, seeds 0 and 1), K-Net's own neck, and D2S on the C5 -> stride-16 step only, nearest to stride 8,
# without and with FPN's 3x3 output conv (d2s_top_sum, d2s_top), five runs side by side. On the CPU the D2S
# of the last step was what K-Net's head lost on (RESULTS.md, issue 31). With arguments, they are
# gpu_knet_ab.py's VARIANTS (e.g. `bash benchmarks/gpu_session.sh baseline branch2 sine`) at GPU_SEEDS
# (default 0). GPU_MINUTES (default 8.5) caps each run. Four demo-scale runs side by side take about 7.5
# minutes for 1800 iterations on an H200.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
if [ $# -eq 0 ]; then
  set -- baseline knet_neck d2s_top_sum d2s_top --runs baseline:1
fi
python3 benchmarks/gpu_knet_ab.py --out /tmp/ab --minutes "${GPU_MINUTES:-8.5}" --seeds ${GPU_SEEDS:-0} --variants "$@"
cp /tmp/ab/summary.md /tmp/ab/summary.json "$OUT"/ 2>/dev/null
tar czf "$OUT/logs.tgz" --exclude='*.pt' --exclude='val_results.json' --exclude='synth*' -C /tmp ab
