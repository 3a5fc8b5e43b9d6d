#!/usr/bin/env bash
# The GPU route, checked on a CUDA machine (none of this runs in CI, which has no GPU):
#   1. the unit tests;
#   2. every chapter executed top to bottom with NETS_DEVICE=cuda — its asserts must pass;
#      the stored (CPU) outputs are not compared, the executed copies go to $OUT/chapters;
#   3. with >= 2 GPUs: the DDP worker on 2 GPUs (NCCL) against 1 GPU, same global batches,
#      and once with SyncBatchNorm;
#   4. one paper-recipe degradation run (ResNet-20, Shapes 32x32, batch 128), timed.
#
#   bash benchmarks/gpu_check.sh            # after the README's setup command
#   OUT=gpu_check STEPS=4000 bash benchmarks/gpu_check.sh
#
# Prints a summary at the end; exits non-zero if any part failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-gpu_check}
STEPS=${STEPS:-4000}
mkdir -p "$OUT"
declare -a SUMMARY=()
status=0
part() {  # part NAME COMMAND...: run, time, record pass/fail
  local name=$1; shift
  local start=$SECONDS
  echo "::: $name"
  if "$@"; then SUMMARY+=("ok    $(printf '%-40s %5d s' "$name" $((SECONDS - start)))")
  else SUMMARY+=("FAIL  $(printf '%-40s %5d s' "$name" $((SECONDS - start)))"); status=1; fi
}

if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device here: this script checks the GPU route" >&2
  exit 2
fi
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
$PY -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" | tee "$OUT/torch.txt"

part "unit tests" bash -c "$PY -m pytest -q -p no:nbval -o addopts='' tests > '$OUT/unit_tests.txt' 2>&1; s=\$?; tail -3 '$OUT/unit_tests.txt'; exit \$s"

part "chapters on cuda" bash -c "NETS_DEVICE=cuda $PY benchmarks/run_notebooks.py --output-dir '$OUT/chapters' 2>&1 | tee '$OUT/chapters.txt'"

if [ "$GPUS" -ge 2 ]; then
  ddp_compare() {
    rm -rf "$OUT/ddp1" "$OUT/ddp2" && mkdir -p "$OUT/ddp1" "$OUT/ddp2" &&
    $PY tests/ddp_worker.py "$OUT/ddp1" --device cuda "$@" &&
    $PY -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py "$OUT/ddp2" --device cuda "$@" &&
    $PY - "$OUT" <<'EOF'
import sys, torch
out = sys.argv[1]
one, two0, two1 = (torch.load(f"{out}/{p}") for p in ("ddp1/rank0.pt", "ddp2/rank0.pt", "ddp2/rank1.pt"))
diff = max((one["state"][k].float() - two0["state"][k].float()).abs().max().item() for k in one["state"])
moved = max((one["state"][k].float() - one["init"][k].float()).abs().max().item() for k in one["init"])
same = two0["history"] == two1["history"]
print(f"2 GPUs vs 1: max weight difference {diff:.2e} (training moved weights by up to {moved:.2e}); "
      f"histories identical on both ranks: {same}")
sys.exit(0 if same and diff < 1e-3 < moved else 1)
EOF
  }
  part "DDP on 2 GPUs (NCCL) vs 1" ddp_compare
  part "DDP with SyncBatchNorm" ddp_compare --sync-bn
else
  SUMMARY+=("skip  DDP with NCCL: $GPUS GPU(s) here, needs 2")
fi

part "paper-recipe degradation run, $STEPS steps" bash -c "$PY -m nets.run degradation --recipe paper --data shapes --nets ResNet-20 --steps $STEPS --device cuda --quiet --out '$OUT/degradation' 2>&1 | tee '$OUT/degradation.txt'"

echo
echo "GPU check ($GPUS GPU(s)); details in $OUT/:"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
[ -f "$OUT/chapters/times.md" ] && cat "$OUT/chapters/times.md"
exit $status
