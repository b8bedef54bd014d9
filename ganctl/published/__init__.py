"""Published StyleGAN2-ADA models as ganctl checkpoints, with no code from the file run (`ganctl import`).

    ganctl import network-snapshot.pkl --out model.pt [dataset=mnist ...]

`unpickler` reads a stylegan2-ada-pytorch pickle as data (a restricted unpickler: tensors, storages,
plain containers and the reference's persistence records, whose source code is never run);
`conversion` turns its records into ganctl's settings and tensors and a checkpoint. This module is
the command's arguments only: `ganctl import --help` loads no torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ganctl.errors import GanctlError

SOURCE = "stylegan2-ada-pytorch"
FILES = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="ganctl import",
        description=f"Convert a {SOURCE} network pickle (NVIDIA's published models: {FILES}) into a ganctl checkpoint "
                    "of model=stylegan2, without running any code from the file.")
    parser.add_argument("pickle", help="a network-snapshot-*.pkl of stylegan2-ada-pytorch (G, D and G_ema)")
    parser.add_argument("--out", required=True, help="the checkpoint to write (.pt); an existing file is not replaced")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config for what the pickle does not say, e.g. dataset=mnist (default: dataset=folder at the "
                             "pickle's training-set path)")
    args = parser.parse_intermixed_args(argv)
    pickle = Path(args.pickle).expanduser()
    if not pickle.is_file():  # answered before torch loads
        raise GanctlError(f"Cannot read {pickle}: {'it is a directory' if pickle.is_dir() else 'no such file'}. "
                          f"`ganctl import` reads the network-snapshot-*.pkl files of stylegan2-ada-pytorch ({FILES}).")
    out = Path(args.out)
    if out.is_dir():
        raise GanctlError(f"--out {out} is a directory: give a file name such as {out / 'model.pt'}.")
    if out.exists() and not args.force:
        raise GanctlError(f"{out} already exists: ganctl import does not replace it. Choose another --out, or pass --force.")
    from ganctl import checkpoint
    from ganctl.console import console, word
    from ganctl.published.conversion import convert

    state, model = convert(Path(args.pickle), list(args.overrides))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GanctlError(f"Cannot write {out}: {error.strerror or error}.") from error
    checkpoint.save(state, out)
    parent, data = state["lineage"]["parents"][0], state["data"]
    classes = f", {len(data['classes'])} classes" if data.get("classes") else ""
    console.print(f"Imported {args.pickle} ({SOURCE}, sha256 {parent['checksum'][:16]}..., with {', '.join(parent['has'])}) as "
                  f"{out}: model=stylegan2 at {data['image_size']}x{data['image_size']}x{data['channels']}{classes}.\n"
                  f"Sample it:    ganctl sample {word(out)}\n"
                  f"Fine-tune it: ganctl train {word(f'init_from={out}')} {' '.join(map(word, model))} dataset=<yours>")
    return 0
