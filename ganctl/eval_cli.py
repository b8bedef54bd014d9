"""`ganctl eval`'s command line: its arguments, parsed and checked before torch loads (a missing
checkpoint, an unknown metric, a --num below 2 or a psi beyond 1 is answered at once), then handed to
`ganctl.evaluate`, where the scoring and torch live (its Python entry points check their arguments with
the same functions of `ganctl.arguments`)."""

from __future__ import annotations

import argparse

from ganctl import protocols, rundir
from ganctl.arguments import check_device, check_psi, checked_folder, checked_psis, checked_scoring
from ganctl.config import check_feature
from ganctl.errors import GanctlError
from ganctl.registry import FEATURE_NAMES


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganctl eval", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score a ganctl checkpoint (or a folder of images): FID, KID, IS, precision, recall, density, "
                    "coverage, nearest training images.",
        epilog="examples:\n  ganctl eval RUN --metrics fid,precision,recall\n  ganctl eval RUN --protocol fid50k_full\n"
               "  ganctl eval RUN --feature dinov2 --resize clean     # FD-DINOv2 (its weights file: docs/metrics.md)\n"
               "  ganctl eval RUN --feature judge:judge.pt             # a judge from ganctl judge train\n"
               "  ganctl eval RUN --nearest 16\n"
               "  ganctl eval RUN --truncation-sweep 1,0.9,0.7,0.5\n  ganctl eval --images DIR --dataset mnist\n"
               "  ganctl eval RUN --images DIR                  # against the run's dataset, with its metric settings")
    parser.add_argument("checkpoint", nargs="?", help="a checkpoint .pt file, or a run directory (its checkpoints/last.pt)")
    parser.add_argument("--metrics", help="comma-separated: fid,kid,is,precision,recall,density,coverage,class_balance,"
                                          "judge_accuracy,ppl_zend,ppl_wend, or none (default: the run's metrics.names)")
    parser.add_argument("--num", type=int, help="generated images to score (default: the run's metrics.num_fake; "
                                                "--images: every image, or the first N)")
    parser.add_argument("--split", help="real images to compare with: train | test (default: the run's metrics.split)")
    parser.add_argument("--seed", type=int, help="seed of the latents (default: the run's metrics.seed)")
    parser.add_argument("--truncation", type=float, default=1.0, metavar="PSI", help="score samples truncated at psi (default 1: none)")
    parser.add_argument("--truncation-sweep", metavar="PSIS",
                        help="score at each of these psi values (e.g. 1,0.9,0.7,0.5): a table (.csv) and its plot (.png)")
    parser.add_argument("--nearest", type=int, default=0, metavar="K",
                        help="also find the nearest training image of K samples: a grid and the mean distance")
    parser.add_argument("--images", metavar="DIR", help="score the image files in DIR (from any tool) instead of a generator")
    parser.add_argument("--dataset", help="--images: the dataset option to compare with (e.g. mnist, cifar10, folder), "
                                          "when no checkpoint names it")
    parser.add_argument("--data-root", help="--images --dataset: the dataset's dataset.root")
    parser.add_argument("--protocol", help=f"a named protocol: {', '.join(protocols.PROTOCOLS)} (its settings, then any flag "
                                           "on top: the cards then say custom)")
    parser.add_argument("--feature", help=f"the backbone: {', '.join(FEATURE_NAMES)}, or judge:FILE (default: the run's metrics.feature)")
    parser.add_argument("--resize", choices=("tf1", "clean"), help="how images reach a pretrained backbone's size: tf1 "
                                                                   "(TensorFlow 1.x bilinear) or clean (clean-fid's PIL bicubic)")
    parser.add_argument("--ppl-distance", choices=("lpips", "discriminator", "judge"),
                        help="what ppl_zend / ppl_wend measure with (default: the run's metrics.ppl_distance)")
    parser.add_argument("--inception-weights", help="a local copy of torch-fidelity's Inception-v3 weights file (else "
                                                   "$GANCTL_INCEPTION_WEIGHTS, then torch's cache)")
    parser.add_argument("--feature-weights", help="a local weights file of --feature dinov2 or clip (else $GANCTL_DINOV2_WEIGHTS "
                                                  "or $GANCTL_CLIP_WEIGHTS, then torch's cache)")
    parser.add_argument("--out", help="file for the metric cards (default <checkpoint>.metrics.json next to it)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="score the raw generator, not its EMA")
    return parser


def main(args: list[str]) -> int:
    options = argument_parser().parse_args(args)
    names = [name.strip() for name in options.metrics.split(",") if name.strip()] if options.metrics is not None else None
    measure = {"protocol": options.protocol, "feature": check_feature(options.feature) if options.feature is not None else None,
               "resize": options.resize, "feature_weights": options.feature_weights, "ppl_distance": options.ppl_distance}
    if options.checkpoint is not None:
        rundir.named_checkpoint(options.checkpoint)
    check_device(options.device, "--device ")
    if options.protocol is not None:
        protocols.get(options.protocol)  # (its one check, which evaluate's metric_settings makes too)
    if options.images is not None:
        if options.nearest or options.truncation_sweep or options.truncation != 1:
            raise GanctlError("--images scores the files as they are: --nearest, --truncation and --truncation-sweep "
                              "are for a checkpoint's generator.")
        checked_folder(options.images, options.checkpoint, options.dataset)
        checked_scoring(names, options.num, options.split)
        from ganctl.evaluate import evaluate_folder  # torch loads here, after every check that needs none

        evaluate_folder(options.images, options.checkpoint, options.dataset, options.data_root, names, options.num,
                        options.split, options.device, options.inception_weights, options.out, measure)
        return 0
    if options.checkpoint is None:
        raise GanctlError("ganctl eval needs a checkpoint or run directory (or --images DIR --dataset NAME).")
    if options.dataset or options.data_root:
        raise GanctlError("--dataset and --data-root go with --images DIR; a checkpoint is scored against its own dataset.")
    if options.truncation_sweep is not None:
        try:
            psis = [float(part) for part in options.truncation_sweep.split(",") if part.strip()]
        except ValueError:
            raise GanctlError(f"--truncation-sweep takes comma-separated numbers from 0 to 1, got {options.truncation_sweep!r}.") from None
        checked_psis(psis)
        checked_scoring(names, options.num, options.split)
        from ganctl.evaluate import truncation_sweep

        truncation_sweep(options.checkpoint, psis, names, options.num, options.split, options.seed, options.device,
                         options.ema, options.inception_weights, options.out, measure)
        return 0
    check_psi(options.truncation)
    checked_scoring(names, options.num, options.split, options.nearest)
    from ganctl.evaluate import evaluate

    evaluate(options.checkpoint, names, options.num, options.split, options.seed, options.device, options.ema,
             options.inception_weights, options.nearest, options.out, options.truncation, measure)
    return 0
