"""Check `ganctl import` against the reference, NVlabs/stylegan2-ada-pytorch, on this machine's CPU.

    git clone https://github.com/NVlabs/stylegan2-ada-pytorch /tmp/stylegan2-ada-pytorch
    OMP_NUM_THREADS=1 python scripts/compare_stylegan2_import.py --reference /tmp/stylegan2-ada-pytorch \\
        tests/fixtures/stylegan2-ada/network-snapshot.pkl
    # or a published model, e.g. https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/cifar10.pkl

The pickle is read twice: by the reference's own code (plain `pickle.load`, which runs the source code
the file carries -- that is how the reference loads it, so run this only on files you trust) and by
`ganctl import`'s restricted reader, which runs none. Then, for the same z (seeds 0..N-1), classes
(every class in turn) and truncation psi (1 and 0.7), it prints the largest |reference - ganctl|
of G_ema's images with the stored noise (noise_mode='const', generate.py's default), raw (before
the clamp to [-1, 1]) and clamped, and of D's scores for the reference's images. The reference
computes in fp32 here (`force_fp32=True`; on a GPU it runs its 4 highest resolutions in fp16).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_stylegan2_reference import import_reference  # noqa: E402

from ganctl.published.conversion import convert  # noqa: E402
from ganctl.sampling import Sampler, critic_from_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a checkout (or bare git directory) of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("pickle", type=Path, help="a stylegan2-ada-pytorch network pickle")
    parser.add_argument("--num", type=int, default=8, help="images per truncation")
    args = parser.parse_args()
    import_reference(args.reference)  # the reference's torch_utils and dnnlib, which its pickles import
    torch.set_grad_enabled(False)
    with open(args.pickle, "rb") as file:
        theirs = pickle.load(file)  # runs the file's own code: the reference's way
    state, model = convert(args.pickle)
    print(f"ganctl's settings for it: {' '.join(model)}")
    data = state["data"]
    classes = len(data.get("classes") or [])
    z = torch.randn(args.num, state["config"]["model"]["generator"]["latent_dim"], generator=torch.Generator().manual_seed(0))
    labels = torch.arange(args.num) % classes if classes else None
    c = torch.nn.functional.one_hot(labels, classes).float() if classes else torch.zeros(args.num, 0)
    worst = 0.0
    for psi in (1.0, 0.7):
        sampler = Sampler.from_checkpoint(state, torch.device("cpu"), truncation=psi)
        reference = theirs["G_ema"].eval()(z, c, truncation_psi=psi, noise_mode="const", force_fp32=True)
        ours = sampler.generator.synthesis(sampler.generator.styles(z, labels, psi), clamp=False)
        clamped = next(sampler.batches(z, args.num, labels))
        raw = (reference - ours).abs().max().item()
        worst = max(worst, raw)
        print(f"G_ema, psi {psi}: max |reference - ganctl| raw {raw:.2e}, clamped {(reference.clamp(-1, 1) - clamped).abs().max().item():.2e} "
              f"(images up to {reference.abs().max().item():.2g})")
    if theirs.get("D") is not None:
        critic = critic_from_checkpoint(state, torch.device("cpu"))
        images = theirs["G_ema"](z, c, noise_mode="const", force_fp32=True).clamp(-1, 1)
        scores = critic(images, labels) if classes else critic(images)
        print(f"D's scores: max |reference - ganctl| {(theirs['D'].eval()(images, c, force_fp32=True).flatten() - scores).abs().max().item():.2e}")
    print(f"largest image difference: {worst:.2e} ({'within' if worst <= 1e-4 else 'BEYOND'} 1e-4)")


if __name__ == "__main__":
    main()
