"""Write tests/fixtures/stylegan2-ada/: a tiny network snapshot pickled by the reference code itself,
and the reference's images for fixed latents, so the test suite checks `ganctl import` with no checkout.

    git clone https://github.com/NVlabs/stylegan2-ada-pytorch /tmp/stylegan2-ada-pytorch
    OMP_NUM_THREADS=1 python scripts/write_stylegan2_import_fixture.py --reference /tmp/stylegan2-ada-pytorch

(--reference may also be a bare git directory, as for scripts/compare_stylegan2_reference.py, whose
`import_reference` this uses; the reference runs on the CPU through its plain-PyTorch paths.)

What it writes, in the layout of the reference's training_loop.py (`pickle.dump(dict(training_set_kwargs=...,
G=..., D=..., G_ema=..., augment_pipe=...))`, each module deep-copied, eval mode, no gradients, on the CPU):

  - network-snapshot.pkl: G, D and G_ema at 32x32x1 with 10 classes (the shape of ganctl's bundled
    digits), z = w = 32, mapping depth 2, channel base 128, max 16, num_fp16_res 4 and conv_clamp 256
    as its train.py sets them, D resnet with minibatch-std groups of 4, and an ADA augment pipe ('bgc');
    the constant-initialised tensors (biases, noise strengths, affine biases) perturbed and w_avg moved
    by a few training-mode mapping calls, so that every stored tensor changes the images;
  - reference-images.pt: {"z": (4, 32), "classes": (4,), "psi_1.0": (4, 1, 32, 32), "psi_0.7": ...}, G_ema's
    images as generate.py makes them (noise_mode='const'), but in fp32 (`force_fp32=True`: on a GPU the
    reference runs its 4 highest resolutions in fp16, on this CPU ganctl and it compute in fp32);
  - reference-images.json: what the .pt holds and how it was made (the reference's commit among it).

Written again, the pickle's bytes differ (torch names each storage by its address at the time) while
its tensors and the images are the same.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_stylegan2_reference import import_reference  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "stylegan2-ada"
CLASSES, Z_DIM, RESOLUTION, CHANNELS = 10, 32, 32, 1


def perturbed(network: torch.nn.Module) -> None:
    """The constant-initialised parameters (zero biases and noise strengths, affine biases of 1) moved."""
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if name.endswith("noise_strength"):
                parameter.copy_(0.3 * torch.randn(()))
            elif name.endswith("affine.bias"):
                parameter.add_(0.2 * torch.randn_like(parameter))
            elif name.endswith("bias"):
                parameter.copy_(torch.randn_like(parameter) * (10.0 if ".fc" in name and name.startswith("mapping") else 0.1))


def reference_commit(path: Path) -> str:
    """The reference's commit (a checkout's or a bare git directory's HEAD), or 'unknown'."""
    for where in ([f"--git-dir={path}"], ["-C", str(path)]):
        found = subprocess.run(["git", *where, "rev-parse", "HEAD"], capture_output=True, text=True)
        if found.returncode == 0:
            return found.stdout.strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a checkout (or bare git directory) of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args()
    networks, _ = import_reference(args.reference)
    import dnnlib  # noqa: E402  (the reference's, on the path import_reference set)
    from training.augment import AugmentPipe  # noqa: E402

    torch.manual_seed(0)
    common = dict(c_dim=CLASSES, img_resolution=RESOLUTION, img_channels=CHANNELS)
    # As train.py's G_kwargs / D_kwargs (EasyDicts), and training_loop.py's construct_class_by_name.
    G = networks.Generator(z_dim=Z_DIM, w_dim=32, mapping_kwargs=dnnlib.EasyDict(num_layers=2),
                           synthesis_kwargs=dnnlib.EasyDict(channel_base=128, channel_max=16, num_fp16_res=4, conv_clamp=256),
                           **common).train().requires_grad_(False)
    D = networks.Discriminator(channel_base=128, channel_max=16, num_fp16_res=4, conv_clamp=256, block_kwargs=dnnlib.EasyDict(),
                               mapping_kwargs=dnnlib.EasyDict(), epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=4),
                               **common).train().requires_grad_(False)
    perturbed(G), perturbed(D)
    with torch.no_grad():  # w_avg away from 0, so truncation pulls somewhere
        for _ in range(20):
            G.mapping(torch.randn(16, Z_DIM), torch.nn.functional.one_hot(torch.randint(CLASSES, (16,)), CLASSES).float())
    G_ema = copy.deepcopy(G).eval()
    augment_pipe = AugmentPipe(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
                               lumaflip=1, hue=1, saturation=1).train().requires_grad_(False)
    augment_pipe.p.copy_(torch.as_tensor(0.2))
    training_set_kwargs = dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path="~/datasets/digits-32.zip",
                                          use_labels=True, max_size=5000, xflip=False, resolution=RESOLUTION)
    snapshot = dict(training_set_kwargs=dict(training_set_kwargs))
    for name, module in [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", augment_pipe)]:
        snapshot[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    args.out.mkdir(parents=True, exist_ok=True)
    pickle_path = args.out / "network-snapshot.pkl"
    with open(pickle_path, "wb") as file:
        pickle.dump(snapshot, file)

    generator = snapshot["G_ema"]
    z = torch.randn(4, Z_DIM, generator=torch.Generator().manual_seed(1))
    classes = torch.tensor([0, 3, 7, 9])
    c = torch.nn.functional.one_hot(classes, CLASSES).float()
    images = {"z": z, "classes": classes}
    with torch.no_grad():
        for psi in (1.0, 0.7):
            images[f"psi_{psi}"] = generator(z, c, truncation_psi=psi, noise_mode="const", force_fp32=True)  # (4, 1, 32, 32)
    torch.save(images, args.out / "reference-images.pt")
    described = {
        "pickle": pickle_path.name, "pickle_sha256": hashlib.sha256(pickle_path.read_bytes()).hexdigest(),
        "images": "reference-images.pt: G_ema(z, one_hot(classes), truncation_psi=psi, noise_mode='const', force_fp32=True), "
                  "raw (not clamped), (4, 1, 32, 32) per psi",
        "psi": [1.0, 0.7], "classes": classes.tolist(), "torch": torch.__version__, "reference_commit": reference_commit(args.reference),
        "written_by": "scripts/write_stylegan2_import_fixture.py",
    }
    (args.out / "reference-images.json").write_text(json.dumps(described, indent=2) + "\n")
    print(f"wrote {pickle_path} ({pickle_path.stat().st_size:,} bytes) and the reference's images")


if __name__ == "__main__":
    main()
