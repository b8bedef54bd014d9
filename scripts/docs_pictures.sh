#!/usr/bin/env bash
# The README's pictures (docs/*.png, docs/*.gif), made by ganctl itself from two short runs on the
# bundled digits: the default run for 1,500 steps and the class-conditional experiment for 1,500.
# Usage: scripts/docs_pictures.sh [work dir]   (about 10 minutes on a 2-core CPU). The training grids hold 16
# samples (train.num_samples=16) so that the animation stays small.
set -euo pipefail
work=${1:-/tmp/ganctl-docs-pictures}
docs=$(cd "$(dirname "$0")/.." && pwd)/docs
mkdir -p "$work"
# The pixel feature (ganctl.metrics.PooledPixels) lets the truncation sweep run offline, without Inception weights.
[ -f "$work/run/summary.json" ] || ganctl train train.steps=1500 train.sample_every=150 train.num_samples=16 train.ckpt_every=0 \
  "metrics.feature={_target_:ganctl.metrics.PooledPixels,size:8}" hydra.run.dir="$work/run"
[ -f "$work/cgan/summary.json" ] || ganctl train experiment=mnist_cgan train.steps=1500 train.sample_every=0 train.ckpt_every=0 hydra.run.dir="$work/cgan"
python - "$work" "$docs" <<'PY'
import sys
from pathlib import Path

import torch
from torchvision.utils import save_image

from ganctl import checkpoint
from ganctl.sampling import Sampler

work, docs = Path(sys.argv[1]), Path(sys.argv[2])
state = checkpoint.load(checkpoint.last_path(work / "run"))
rows = []
for psi in (1.0, 0.9, 0.75, 0.5):  # the same 16 latents of seed 0, one row per psi
    rows.append(Sampler.from_checkpoint(state, torch.device("cpu"), truncation=psi).images(16, seed=0))
save_image(torch.cat(rows), docs / "truncation.png", nrow=16, normalize=True, value_range=(-1, 1))
PY
ganctl sample "$work/run" --interpolate --seeds 1,2,3,1 --frames 12 --fps 10 --out "$docs/walk.gif"
ganctl sample "$work/cgan" --class-walk --seed 4 --out "$work/classwalk.gif"
cp "$work/classwalk.png" "$docs/classwalk.png"
ganctl sample "$work/run" --add 11,12,13 --subtract 21,22,23 --add 31,32,33 --out "$docs/arithmetic.png"
rm -f "$docs/arithmetic.npy"
ganctl plot "$work/run" --out "$docs/curves.png"
ganctl animate "$work/run" --out "$docs/progress.gif" --fps 6
GANCTL_CACHE_DIR="$work/cache" ganctl eval "$work/run" --truncation-sweep 1,0.9,0.8,0.7,0.6,0.5 --metrics fid,precision,recall \
  --num 1000 --out "$work/truncation.csv"
cp "$work/truncation.png" "$docs/truncation_sweep.png"
ls -la "$docs"/*.png "$docs"/*.gif
