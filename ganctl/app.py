"""The Hydra application behind `ganctl train`: own the run directory (its lock, taken before Hydra
writes there when the command line names it), compose the config, pick the checkpoint `resume=`
means, then hand it to the loop (or, in a sweep, to the job runtime in `ganctl.sweep`)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

import hydra
import yaml
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ganctl import config, overrides, rundir, sweep
from ganctl.console import print_error
from ganctl.errors import EXIT_CODES, GanctlError
from ganctl.files import remove_links

HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")  # what Hydra writes into <run dir>/.hydra/
# Hydra's flags that print or complete instead of training: they take no lock.
NOT_TRAINING = ("-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion",
                "-m", "--multirun")


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="train")
def hydra_train(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return sweep.run_job(cfg, hydra_cfg, run)
    try:
        result = run(cfg, hydra_cfg)
    except GanctlError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        logging.getLogger("ganctl").error("%s", error)  # into train.log too (a diverged run keeps it)
        print_error(error)
        if not isinstance(error, rundir.RunLocked):  # a locked directory is another process's: leave it be
            discard_refused_run(Path(hydra_cfg.runtime.output_dir))
        sys.exit(1)
    if result.interrupted_by:
        sys.exit(EXIT_CODES.get(result.interrupted_by, 1))
    return None


def discard_refused_run(run_dir: Path) -> None:
    """A run refused before it trained leaves nothing behind: Hydra had already made its directory
    with `.hydra/` and `train.log`; remove them, and the directory if that was all it held (its
    lock file goes, with the directory, when the lock is released)."""
    if not run_dir.is_dir() or not set(os.listdir(run_dir)) <= {".hydra", "train.log", rundir.LOCK_FILE}:
        return  # it holds more (an earlier run, samples of this one): leave it as it is
    root = logging.getLogger()
    for handler in list(root.handlers):  # close this run's train.log (Hydra's job logging writes it)
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir.resolve():
            root.removeHandler(handler)
            handler.close()
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    (run_dir / "train.log").unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:
        pass


def run(cfg: DictConfig, hydra_cfg: DictConfig):
    """One training run from the composed config, or from a checkpoint's stored one with `resume=`."""
    if cfg.resume is not None and cfg.init_from is not None:
        raise GanctlError("resume= continues a run and init_from= starts a new one from a checkpoint's weights: pass one "
                          "of them, not both.")
    for path in (cfg.resume, cfg.init_from):  # a mistyped path is answered before torch loads (config.check may load it)
        if path is not None:
            rundir.named_checkpoint(path)
    if cfg.resume is None:
        with_protocol(cfg, list(hydra_cfg.overrides.task))
        config.check(cfg)  # its value checks need no torch: a mistake is answered before torch loads
    # torch loads here, after Hydra has parsed the command line: `--cfg job` and --help stay fast.
    from ganctl import checkpoint
    from ganctl.train import train

    choices = {group: hydra_cfg.runtime.choices[group] for group in config.GROUPS}
    run_dir = Path(hydra_cfg.runtime.output_dir)  # with resume=, the checkpoint's run unless hydra.run.dir says
    with rundir.hold(run_dir):  # already held when the command line named the directory (main)
        state = None
        if cfg.resume is not None:
            path, state = checkpoint.find(cfg.resume, use="ganctl train resume={}")
            checkpoint.check_resume_into(run_dir, path, state)
            cfg = config.resumed_config(state["config"], state["choices"], cfg, list(hydra_cfg.overrides.task), choices)
            choices = state["choices"]
            config.check(cfg)
        try:
            return train(cfg, run_dir, choices, resume=state)
        except OSError as error:  # a grid, the summary, the logs: checkpoint writes say so themselves
            raise GanctlError(checkpoint.stopped_by(run_dir, error)) from error


def with_protocol(cfg: DictConfig, task: list[str]) -> None:
    """A new run's metrics.protocol made concrete: the protocol's values for the metrics keys it fixes,
    except those the command line sets (which keep their values: the cards then say custom)."""
    from ganctl import protocols

    if OmegaConf.select(cfg, "metrics.protocol") is None:
        return
    for key, value in protocols.preset(cfg.metrics, protocols.explicit_keys(task)).items():
        cfg.metrics[key] = value


def resume_arguments(args: list[str]) -> list[str]:
    """With `resume=<checkpoint or run dir>`, continue in that run's own directory, and leave its
    .hydra/ record of the original command as it is. With hydra.run.dir too, a new run starts there
    from the checkpoint (a branch)."""
    resume = next((unquoted(a.split("=", 1)[1]) for a in args if a.startswith("resume=")), None)
    if resume in (None, "", "null") or any(a.startswith("hydra.run.dir=") for a in args):
        return args
    path = Path(resume).expanduser()
    if path.is_file() and rundir.absolute(path).parent.name != "checkpoints":
        from ganctl import checkpoint

        checkpoint.load(path)  # what the file is comes first: a PNG is refused as a PNG
        raise GanctlError(
            f"{path} is not in a run directory's checkpoints/ folder, so it has no run to continue in: add "
            f"hydra.run.dir=<new dir> to start a new run directory from it."
        )
    return [*args, quoted(f"hydra.run.dir={rundir.resume_dir(resume)}"), "hydra.output_subdir=null"]


def quoted(argument: str) -> str:
    """An override that Hydra's grammar cannot read as written but can as a quoted string (a path such
    as /data/café, ~/data or /data/a&b), quoted; anything Hydra reads as written (a sweep a,b, a list, an
    interpolation) is left as it is, and so is what quoting cannot mend (Hydra says what is wrong)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    key, sep, value = argument.partition("=")
    if not sep or argument.startswith("-") or "'" in value or not value:
        return argument
    parser = OverridesParser.create()
    try:
        parser.parse_override(argument)
        return argument
    except Exception:  # Hydra's grammar refused it: would a quoted string do?
        try:
            parser.parse_override(f"{key}='{value}'")
        except Exception:
            return argument
    return f"{key}='{value}'"


def unquoted(value: str) -> str:
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" else value


def named_run_dir(args: list[str]) -> Optional[Path]:
    """The run directory a training command names with hydra.run.dir= (which resume= implies), if
    it names one that is known before Hydra composes the config: a path, or one made from environment
    variables (${oc.env:...}). Hydra computes the others (${now:...}, ${hydra:...}): their time is Hydra's
    own, and a new directory's."""
    if any(arg in NOT_TRAINING or arg.split("=", 1)[0] in NOT_TRAINING or arg == "hydra.mode=MULTIRUN" for arg in args):
        return None
    value = None
    for arg in args:
        if arg.startswith("hydra.run.dir="):
            from hydra.core.override_parser.overrides_parser import OverridesParser

            try:
                value = OverridesParser.create().parse_override(arg).value()
            except Exception:  # Hydra reports a malformed override in its own words
                return None
    if isinstance(value, str) and "${" in value:
        value = without_hydra(value)
    return Path(value) if isinstance(value, str) and value else None


def without_hydra(value: str) -> Optional[str]:
    """An interpolated hydra.run.dir resolved as Hydra will resolve it, when that needs nothing of
    Hydra's (the environment: ${oc.env:HOME}/runs/a); None when it does (the clock, Hydra's config,
    the run's config), or when it cannot be resolved (Hydra reports that in its own words)."""
    from omegaconf import OmegaConf

    if "${now:" in value or "${hydra:" in value:
        return None
    try:
        resolved = OmegaConf.to_container(OmegaConf.create({"dir": value}), resolve=True)["dir"]
    except Exception:  # an interpolation of the run's config, or a mistake
        return None
    return resolved if isinstance(resolved, str) else None


def check_arguments(args: list[str]) -> None:
    """What ganctl refuses before Hydra sees the command line: habits Hydra's grammar answers with a
    parser error, and overrides of keys it does not know."""
    from hydra._internal.utils import get_args_parser

    overrides.check_habits(args)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parsed = get_args_parser().parse_args(args)
    except SystemExit:
        return  # Hydra will say what is wrong with the flags
    if parsed.help or parsed.hydra_help or parsed.info or parsed.shell_completion or parsed.config_name or parsed.config_path or parsed.config_dir:
        return
    overrides.check_override_keys(parsed.overrides)


class CheckedConfigLoader(ConfigLoaderImpl):
    """Hydra's config loader, which checks every config it composes -- the run's, and each sweep job's,
    in whichever process composes it -- before Hydra builds anything from it (its logging, callbacks,
    launcher, sweeper): `registry.check_hydra`. A launcher sends this loader to its workers, so they
    import this class and check too."""

    def load_configuration(self, *args: Any, **kwargs: Any) -> DictConfig:
        from hydra_plugins.ganctl_sweeper import without_the_old_plugin_configs

        without_the_old_plugin_configs()
        try:
            cfg = super().load_configuration(*args, **kwargs)
            from ganctl import registry

            registry.check_hydra(cfg.hydra)
        except yaml.YAMLError as error:  # a file of --config-dir that is not plain YAML (!!python/object ...)
            print_error(not_plain_yaml(error))
            raise SystemExit(1) from None
        except GanctlError as error:  # one line, not Hydra's report (a SystemExit passes through it)
            print_error(error)
            raise SystemExit(1) from None
        return cfg


def not_plain_yaml(error: yaml.YAMLError) -> str:
    """One line for a config file Hydra's YAML reader refused: where, and what."""
    mark = getattr(error, "problem_mark", None)
    where = f"{mark.name}, line {mark.line + 1}" if mark is not None else "a config file"
    problem = str(getattr(error, "problem", None) or error).splitlines()[0]
    return (f"Cannot read {where}: {problem}. A config file holds plain YAML values: no tags that build Python "
            "objects (!!python/object, !!python/name); a component is named with _target_.")


def run_job_in_place(run_job: Any) -> Any:
    """Hydra's run_job, whose own work before the task (making the run directory, writing .hydra/ and
    opening train.log) ends in one line when the file system refuses it, not a traceback."""

    def run_job_or_refuse(*args: Any, **kwargs: Any) -> Any:
        try:
            return run_job(*args, **kwargs)  # the task's own exceptions come back in its result, not here
        except OSError as error:
            print_error(f"Cannot create the run directory's files ({error.filename or error}): {error.strerror or error}. "
                        "Train into a directory you can write to, with hydra.run.dir=<dir>.")
            raise SystemExit(1) from None

    return run_job_or_refuse


@contextlib.contextmanager
def checked_hydra_configs() -> Iterator[None]:
    """Inside the block, the Hydra app composes with `CheckedConfigLoader`."""
    from hydra._internal import hydra as hydra_internal

    original, run_job = hydra_internal.ConfigLoaderImpl, hydra_internal.run_job
    hydra_internal.ConfigLoaderImpl, hydra_internal.run_job = CheckedConfigLoader, run_job_in_place(run_job)
    try:
        yield
    finally:
        hydra_internal.ConfigLoaderImpl, hydra_internal.run_job = original, run_job


def main(args: list[str]) -> int:
    """`ganctl train ARGS`: Hydra reads sys.argv, so it is swapped in for the call and restored. A
    run directory named on the command line is locked first, before Hydra writes into it."""
    args = [quoted(argument) for argument in overrides.expand_shorthands(args)]
    check_arguments(args)
    args = resume_arguments(args)
    run_dir = named_run_dir(args)
    saved = sys.argv
    sys.argv = ["ganctl train", *args]
    with tempfile.TemporaryDirectory(prefix="ganctl-rank") as elsewhere:
        if int(os.environ.get("RANK", "0")) > 0:  # under torchrun, rank 0 alone owns the run directory
            sys.argv += [f"hydra.run.dir={elsewhere}", "hydra.output_subdir=null", "hydra/job_logging=disabled"]
        try:
            with rundir.hold(run_dir) if run_dir is not None else contextlib.nullcontext():
                if run_dir is not None and not any(a.startswith("resume=") and a not in ("resume=", "resume=null") for a in args):
                    rundir.refuse_new_run_over(run_dir)  # before Hydra rewrites that run's .hydra/
                if run_dir is not None:  # Hydra opens these by name, through a link: it gets a file of its own
                    remove_links(run_dir / "train.log", *(run_dir / ".hydra" / name for name in HYDRA_FILES))
                with checked_hydra_configs():
                    return sweep.supervise(hydra_train)
        finally:
            sys.argv = saved
