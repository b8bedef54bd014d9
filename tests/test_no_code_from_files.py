"""Files name components, never code: a checkpoint's stored config, an exported generator's metadata
and a user's YAML are refused, by key and value, before anything they name is built -- however the
name is reached (an attribute path through ganctl's modules, a nested node, Hydra's own keywords).
The crafted files are made as an attacker would: from a real checkpoint, with a valid checksum."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganctl import checkpoint, registry
from ganctl.errors import GanctlError

from helpers import TINY, TINY_DCGAN, run_cli, train_in_process


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run_dir = tmp_path_factory.mktemp("real") / "run"
    train_in_process(*TINY, *TINY_DCGAN, "train.steps=2", f"hydra.run.dir={run_dir}")
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def writes(marker: Path) -> dict:
    """Settings that, called, would create `marker` (open's file and mode; Path.write_text's data)."""
    return {"file": str(marker), "mode": "w", "data": "pwned"}


# Where a payload goes in the stored config, and what it is: each reached a call on main before
# the registry (ganctl.-prefixed names through module attributes, nested nodes, Hydra keywords).
PAYLOADS = {
    "attribute path through a ganctl module": ("model.generator", lambda m: {"_target_": "ganctl.checkpoint.Path.write_text", **writes(m)}),
    "numpy's pickle loader via ganctl.data": ("dataset", lambda m: {"_target_": "ganctl.data.np.load", "file": str(m), "allow_pickle": True}),
    "torch.load via ganctl.metrics": ("metrics.feature", lambda m: {"_target_": "ganctl.metrics.torch.load", "f": str(m), "weights_only": False}),
    "a component in another's settings": ("model.generator", lambda m: nested_write(m)),
    "a nested node in an optimizer": ("optimizer.g", lambda m: {"_target_": "torch.optim.Adam", "lr": {"_target_": "builtins.open", **writes(m)}}),
    "Hydra's _args_": ("model.generator", lambda m: {"_target_": "ganctl.models.DCGANGenerator", "_args_": [{"_target_": "builtins.open", **writes(m)}]}),
    "a component where none is built": ("train.ema", lambda m: {"_target_": "builtins.open", **writes(m)}),
    "a component of the wrong kind": ("model.generator", lambda m: {"_target_": "ganctl.data.folder", "root": str(m)}),
    "a tracker in the logger group": ("logger.tensorboard", lambda m: {"_target_": "builtins.open", **writes(m)}),
}


def nested_write(marker: Path) -> dict:
    """A generator node whose setting is a node that writes `marker`: on main before the registry,
    Hydra built it (and wrote the file) before the generator's call failed."""
    path = {"_target_": "ganctl.checkpoint.Path", "_args_": [str(marker)]}
    return {"_target_": "ganctl.models.DCGANGenerator", "base_filters": {"_target_": "ganctl.checkpoint.Path.write_text",
                                                                         "self": path, "data": "pwned"}}


def crafted(state: dict, where: str, payload: dict, path: Path) -> Path:
    hostile = copy.deepcopy(state)
    node = hostile["config"]
    *parents, last = where.split(".")
    for key in parents:
        node = node[key]
    node[last] = payload
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(hostile, path)  # a plain, loadable dict with a valid checksum: only its config is hostile
    return path


@pytest.mark.parametrize("name", PAYLOADS)
def test_a_checkpoint_naming_code_is_refused_by_key_before_anything_is_built(state: dict, name: str, tmp_path: Path) -> None:
    where, make = PAYLOADS[name]
    marker = tmp_path / "pwned"
    path = crafted(state, where, make(marker), tmp_path / "run" / "checkpoints" / "last.pt")
    with pytest.raises(GanctlError) as refused:
        checkpoint.load(path)
    message = str(refused.value)
    assert f"config.{where}" in message and "never code" in message and "\n" not in message, message
    assert not marker.exists()


def test_every_reader_refuses_a_crafted_checkpoint_in_one_line(state: dict, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = crafted(state, "model.generator", nested_write(marker), tmp_path / "crafted" / "checkpoints" / "last.pt")
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    for command in (["sample", str(path)], ["eval", str(path)], ["export", str(path), "--format", "torchscript"],
                    ["train", f"resume={path}"], ["project", str(path), str(image), "--out", str(tmp_path / "projected")],
                    ["directions", str(path), "--out", str(tmp_path / "directions.npy")]):
        result = run_cli(*command, cwd=tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode == 1 and "Traceback" not in output, output
        assert "config.model.generator.base_filters._target_ names ganctl.checkpoint.Path.write_text" in output, output
    assert not marker.exists()


def test_an_exported_generator_naming_code_is_refused(state: dict, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from ganctl.export import load_safetensors

    marker = tmp_path / "pwned"
    meta = {"generator": {"_target_": "ganctl.checkpoint.Path.write_text", **writes(marker)}, "conditioning": {},
            "channels": 1, "image_size": 28, "classes": None}
    path = tmp_path / "generator.safetensors"
    save_file({k: v.contiguous() for k, v in state["generator"].items()}, str(path), metadata={"ganctl": json.dumps(meta)})
    with pytest.raises(GanctlError, match="model.generator._target_ names ganctl.checkpoint.Path.write_text"):
        load_safetensors(path)
    assert not marker.exists()


@pytest.mark.parametrize("block", [
    "hydra:\n  callbacks:\n    evil:\n      _target_: builtins.open\n      file: {marker}\n      mode: w\n",
    "metrics:\n  feature:\n    _target_: builtins.open\n    file: {marker}\n    mode: w\n",
    "defaults:\n  - override /hydra/sweeper: optuna\nhydra:\n  sweeper:\n    pruner:\n      _target_: builtins.open\n      file: {marker}\n      mode: w\n",
    "logger:\n  evil:\n    _target_: builtins.open\n    file: {marker}\n    mode: w\n",
    "hydra:\n  job_logging:\n    version: 1\n    handlers:\n      evil:\n        '()': builtins.open\n        file: {marker}\n"
    "        mode: w\n    root:\n      handlers: [evil]\n",
])
def test_a_yaml_from_config_dir_naming_code_is_refused(block: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "evil.yaml").write_text("# @package _global_\n" + block.format(marker=marker))
    result = run_cli("train", "--config-dir", str(tmp_path / "conf"), "experiment=evil", *TINY, *TINY_DCGAN,
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert "builtins.open, which is not one of ganctl's components" in output, output
    assert not marker.exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_a_users_own_component_is_built_only_from_a_module_the_user_trusts(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "my_features.py").write_text(
        "import torch\n\nclass Mean(torch.nn.Module):\n    def forward(self, images):\n"
        "        return images.float().mean((2, 3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(registry.TRUST_VARIABLE, "")
    node = {"_target_": "my_features.Mean"}
    with pytest.raises(GanctlError, match="add --trust my_features"):
        registry.build(node, "metrics.feature")
    registry.trust(["my_features"])
    assert isinstance(registry.build(node, "metrics.feature"), torch.nn.Module)
    for beyond in ("my_features.torch.load", "my_features._private", "my_features_other.Mean"):
        with pytest.raises(GanctlError, match="never code"):
            registry.build({"_target_": beyond}, "metrics.feature")


def test_every_option_of_ganctls_own_configs_names_only_registered_components() -> None:
    """Derived from conf/: each option of each group composes to a config the registry accepts
    (Hydra's part too), and every name the registry accepts is a callable that exists."""
    from hydra import compose, initialize_config_dir

    from ganctl.config import config_dir
    from hydra_plugins.ganctl_sweeper import without_the_old_plugin_configs

    root = Path(config_dir())
    options = [f"{group.relative_to(root)}={yaml.stem}" for group in sorted(p for p in root.rglob("*") if p.is_dir())
               for yaml in sorted(group.glob("*.yaml")) if group.name != "job_logging"]
    assert len(options) > 40, options
    with initialize_config_dir(config_dir=str(root), version_base="1.3"):
        without_the_old_plugin_configs()  # as ganctl's config loader does, where hydra-optuna-sweeper is still installed
        for option in options:
            within = ["hydra/sweeper=optuna"] if option.startswith("hydra/sweeper/") else []  # its samplers and pruners
            cfg = compose(config_name="train", overrides=[*within, option], return_hydra_config=True)
            registry.check_hydra(cfg.hydra)
            registry.check_config({key: value for key, value in cfg.items() if key != "hydra"}, option)
    hydra_names = (*registry.CALLBACKS, *registry.SAMPLERS, *registry.PRUNERS)
    for name in {*hydra_names, *(name for names in registry.PLACES.values() for name in names)}:
        assert callable(registry.resolve(name)), name
