from __future__ import annotations

import pytest

from helpers import TINY, TINY_DCGAN


@pytest.fixture(scope="session", autouse=True)
def private_caches(tmp_path_factory: pytest.TempPathFactory):
    """Nothing the suite runs writes outside its temporary directories: ganctl's caches (decoded
    datasets, real-image features), matplotlib's, W&B's and the config folders of the tools the tests start
    (Chromium's crash-report settings, MLflow's) go under the session's own (subprocesses
    inherit the environment). A test that is about a cache's place sets its own."""
    root = tmp_path_factory.mktemp("caches")
    patch = pytest.MonkeyPatch()
    for variable, folder in (("GANCTL_CACHE_DIR", "ganctl"), ("XDG_CACHE_HOME", "xdg"), ("XDG_CONFIG_HOME", "xdg-config"),
                             ("MPLCONFIGDIR", "matplotlib"),
                             ("WANDB_DIR", "wandb"), ("WANDB_CACHE_DIR", "wandb-cache"), ("WANDB_CONFIG_DIR", "wandb-config"),
                             ("WANDB_DATA_DIR", "wandb-data")):  # (W&B stages artifacts there: ~/.local/share/wandb)
        patch.setenv(variable, str(root / folder))
    yield root
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def fixed_thread_count():
    """Every run the suite trains, in this process or another, keeps torch's count from start to end
    (OMP_NUM_THREADS, which ganctl never changes), so that two runs compared bit for bit stay comparable
    whatever else the machine runs: ganctl's own count takes fewer threads while other processes keep
    the CPUs busy (threads.Backoff). The tests of that policy set their own environment."""
    import torch

    patch = pytest.MonkeyPatch()
    patch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    yield
    patch.undo()


@pytest.fixture
def tiny_overrides() -> list[str]:
    """A DCGAN small enough to train a few steps in about a second on a CPU."""
    return [*TINY, *TINY_DCGAN]


def train_tiny(directory, *overrides: str):
    from helpers import run

    run(directory, *TINY, *TINY_DCGAN, *overrides)
    return directory


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """A 4-step tiny DCGAN run that tests only read (sample, walks, export): trained once per session."""
    return train_tiny(tmp_path_factory.mktemp("tiny_run"))


@pytest.fixture(scope="session")
def tiny_conditional_run(tmp_path_factory: pytest.TempPathFactory):
    """The same with conditioning=projection on MNIST's 10 classes, read-only too."""
    return train_tiny(tmp_path_factory.mktemp("tiny_conditional_run"), "conditioning=projection")
