"""`ganctl import`: a stylegan2-ada-pytorch pickle as a checkpoint, with no code from the file run.

The fixture (tests/fixtures/stylegan2-ada/) was written by the reference code itself
(scripts/write_stylegan2_import_fixture.py), with the reference's images for fixed latents."""

from __future__ import annotations

import builtins
import collections
import dataclasses
import hashlib
import io
import os
import pickle
import pickletools
import random
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

from ganctl import checkpoint, published
from ganctl.published import conversion, unpickler
from ganctl.errors import GanctlError
from ganctl.sample import main as sample_main
from ganctl.sampling import Sampler
from helpers import TINY, run, run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "stylegan2-ada"
PICKLE = FIXTURE / "network-snapshot.pkl"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture imported once, as `ganctl import ... dataset=mnist` writes it."""
    out = tmp_path_factory.mktemp("imported") / "model.pt"
    state, _ = conversion.convert(PICKLE, ["dataset=mnist"])
    checkpoint.save(state, out)
    return out


def test_imported_generator_makes_the_reference_images(imported: Path) -> None:
    state = checkpoint.load(imported)
    assert state["data"] == {"channels": 1, "image_size": 32, "classes": [str(i) for i in range(10)]}
    assert state["choices"]["model"] == "stylegan2" and state["choices"]["conditioning"] == "concat"
    reference = torch.load(FIXTURE / "reference-images.pt", weights_only=True)
    for psi in (1.0, 0.7):
        sampler = Sampler.from_checkpoint(state, torch.device("cpu"), truncation=psi)
        assert sampler.weights == "ema"
        expected = reference[f"psi_{psi}"]  # (4, 1, 32, 32), noise_mode='const'
        assert (expected.abs() > 1).any()  # raw images: the clamp below matters, and the raw comparison too
        images = next(sampler.batches(reference["z"], 8, reference["classes"]))
        torch.testing.assert_close(images, expected.clamp(-1, 1), atol=1e-4, rtol=0)
        with torch.no_grad():
            ws = sampler.generator.styles(reference["z"], reference["classes"], psi)
            torch.testing.assert_close(sampler.generator.synthesis(ws, clamp=False), expected, atol=1e-4, rtol=0)


def test_lineage_records_the_pickle(imported: Path) -> None:
    parent = checkpoint.load(imported)["lineage"]["parents"][0]
    assert parent["checksum"] == hashlib.sha256(PICKLE.read_bytes()).hexdigest() and parent["checksum_kind"] == "sha256"
    assert parent["imported_from"] == "stylegan2-ada-pytorch" and parent["has"] == ["G", "D", "G_ema"]
    from ganctl.finetune import describe

    line = describe(checkpoint.load(imported)["lineage"])
    assert line.startswith("Lineage: imported from stylegan2-ada-pytorch") and "sha256 " + parent["checksum"][:12] in line


def test_without_a_dataset_the_config_names_the_references() -> None:
    state, _ = conversion.convert(PICKLE)
    assert state["choices"]["dataset"] == "folder"
    assert state["config"]["dataset"]["root"] == "~/datasets/digits-32.zip" and state["config"]["dataset"]["channels"] == 1


def test_cli_imports_refuses_to_clobber_and_the_result_samples(tmp_path: Path) -> None:
    out = tmp_path / "model.pt"
    result = run_cli("import", str(PICKLE), "--out", str(out), "dataset=mnist")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "init_from=" in output and "model.generator.channel_base=128" in output
    before = out.read_bytes()
    with pytest.raises(GanctlError, match="already exists"):
        published.main([str(PICKLE), "--out", str(out)])
    assert out.read_bytes() == before
    assert sample_main([str(out), "--num", "2", "--truncation", "0.7", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").is_file()


def test_fine_tuning_starts_from_the_imported_model(imported: Path, tmp_path: Path) -> None:
    model = ["model=stylegan2", "dataset.image_size=32", "model.generator.latent_dim=32", "model.generator.w_dim=32",
             "model.generator.mapping_layers=2", "model.generator.channel_base=128", "model.generator.channel_max=16",
             "model.generator.conv_clamp=256", "model.discriminator.channel_base=128", "model.discriminator.channel_max=16",
             "model.discriminator.conv_clamp=256", "conditioning=concat", "conditioning.discriminator=projection",
             "train.precision=fp32", "train.channels_last=false"]
    run(tmp_path, *TINY, "train.steps=2", "train.ckpt_every=0", f"init_from={imported}", *model)
    lineage = checkpoint.load(checkpoint.last_path(tmp_path))["lineage"]
    assert lineage["reinitialised"] == {} and lineage["new"] == {}
    assert [p.get("imported_from") for p in lineage["parents"]] == [None, "stylegan2-ada-pytorch"]
    assert lineage["parents"][1]["checksum"] == hashlib.sha256(PICKLE.read_bytes()).hexdigest()


# --- What the unpickler refuses -------------------------------------------------------------------


class Reduce:
    """Pickles as `func(*args)`: what a malicious pickle asks the unpickler to call."""

    def __init__(self, func, *args, state=None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def payloads(marker: Path) -> list[tuple[Reduce, str]]:
    """Pickled calls that would create `marker`, each with the name the pickle asks for."""
    return [
        (Reduce(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        (Reduce(builtins.eval, f"open({str(marker)!r}, 'w').close()"), "builtins.eval"),
        (Reduce(subprocess.Popen, ["touch", str(marker)]), "subprocess.Popen"),
    ]


@pytest.mark.parametrize("index", range(3))
def test_refuses_code_and_does_not_run_it(tmp_path: Path, index: int) -> None:
    control = tmp_path / "control"
    payload, name = payloads(control)[index]
    data = pickle.dumps({"G": payload})
    process = pickle.loads(data)  # the control: plain pickle does run it
    if isinstance(process, dict) and isinstance(process["G"], subprocess.Popen):
        process["G"].wait()
    assert control.exists()

    marker = tmp_path / "marker"
    payload, name = payloads(marker)[index]
    for where in ({"G": payload}, {"training_set_kwargs": {"path": payload}}, [1, 2, payload]):
        path = tmp_path / "evil.pkl"
        path.write_bytes(pickle.dumps(where))
        with pytest.raises(GanctlError) as refused:
            unpickler.read(path)
        message = str(refused.value)
        assert f"asks for {name}," in message and "Nothing from the file was run" in message
        assert not marker.exists()


@pytest.fixture
def record(monkeypatch: pytest.MonkeyPatch):
    """Makes pickled persistence records as the reference writes them (`_reconstruct_persistent_obj(meta)`),
    without the reference: `record(class_name, state, module_src)`."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # (only its name is pickled)
        raise AssertionError

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", persistence)

    def make(class_name: str, state: dict, module_src: str = "") -> Reduce:
        meta = dict(type="class", version=6, module_src=module_src, class_name=class_name,
                    state={"_parameters": {}, "_buffers": {}, "_modules": {}, **state})
        return Reduce(_reconstruct_persistent_obj, meta)

    return make


def test_never_runs_the_records_source_code(tmp_path: Path, record) -> None:
    """A persistence record whose module_src would create a file: read as data, its source ignored."""
    marker = tmp_path / "marker"
    source = f"open({str(marker)!r}, 'w').close()\nclass Generator: pass\n"
    path = tmp_path / "record.pkl"
    path.write_bytes(pickle.dumps({"G": record("Generator", {"_init_kwargs": {"z_dim": 8}}, source)}))
    snapshot = unpickler.read(path)
    assert snapshot.generator.class_name == "Generator" and snapshot.generator.init_kwargs == {"z_dim": 8}
    with pytest.raises(GanctlError, match="no image resolution"):
        conversion.settings(snapshot.generator, None)
    assert not marker.exists()


def test_records_nested_too_deep_or_listed_too_often_are_refused(tmp_path: Path, record) -> None:
    chain = record("Leaf", {})
    for _ in range(40):  # 40 levels, each listing the one below twice: 2**40 paths in a few kilobytes
        chain = record("Layer", {"_modules": {"a": chain, "b": chain}})
    path = tmp_path / "nested.pkl"
    path.write_bytes(pickle.dumps({"G": record("Generator", {"_modules": {"synthesis": chain}})}))
    assert path.stat().st_size < 20_000
    with pytest.raises(GanctlError, match="nests modules more than 32 deep or reaches more than 100,000"):
        unpickler.read(path)


def test_a_record_cannot_be_changed_once_made(tmp_path: Path, record) -> None:
    """pickle's BUILD (a state after the call) would set a dataclass's fields: a record refuses it."""
    forged = record("Generator", {})
    forged.state = ("Discriminator", (), {}, {}, {}, {})
    path = tmp_path / "forged.pkl"
    path.write_bytes(pickle.dumps({"G": forged}))
    with pytest.raises(GanctlError, match="a persistence record given a state of its own"):
        unpickler.read(path)


def legacy_storage(numel: int, declared: int) -> bytes:
    """torch's legacy bytes of a float storage (what `_load_from_bytes` reads) holding `numel` values
    and declaring `declared`, in its record and its element count."""
    with warnings.catch_warnings():  # (TypedStorage is deprecated)
        warnings.simplefilter("ignore")
        _, (data,) = torch.zeros(numel).storage().__reduce__()
    head, count, values = data[: -(8 + 4 * numel)], data[-(8 + 4 * numel) : -4 * numel], data[-4 * numel :]
    record = b"cpuq\x03" + pickle.dumps(numel, protocol=2)[2:-1]
    assert count == numel.to_bytes(8, "little") and head.count(record) == 1
    return head.replace(record, b"cpuq\x03" + pickle.dumps(declared, protocol=2)[2:-1]) + declared.to_bytes(8, "little") + values


def test_bad_files_get_one_message_each(tmp_path: Path) -> None:
    def refusal(content: bytes) -> str:
        path = tmp_path / "file.pkl"
        path.write_bytes(content)
        with pytest.raises(GanctlError) as refused:
            conversion.convert(path)
        assert "Traceback" not in str(refused.value)
        return str(refused.value)

    data = PICKLE.read_bytes()
    assert "not a stylegan2-ada-pytorch pickle: it is a text file" in refusal(b"hello\n")
    assert "empty" in refusal(b"")
    assert "damaged or truncated" in refusal(data[: len(data) // 2])
    assert "holds list" in refusal(pickle.dumps([1, 2, 3]))
    assert "no generator" in refusal(pickle.dumps({"training_set_kwargs": {}, "D": None}))
    zipped = io.BytesIO()
    torch.save({"G": torch.zeros(3)}, zipped)
    assert "it is a zip archive" in refusal(zipped.getvalue())
    assert "its G is a dict, not the stylegan2-ada-pytorch Generator" in refusal(pickle.dumps({"G": {"x": 1}}))
    tensor = Reduce(torch._utils._rebuild_tensor_v2, Reduce(torch.storage._load_from_bytes, legacy_storage(3, 3)), 0, (3,),
                    (1,), False, collections.OrderedDict())
    assert "no generator" in refusal(pickle.dumps({"tensor": tensor}))  # (the well-formed storage reads)
    for declared in (10**9, 2**40):
        huge = Reduce(torch._utils._rebuild_tensor_v2, Reduce(torch.storage._load_from_bytes, legacy_storage(3, declared)),
                      0, (3,), (1,), False, collections.OrderedDict())
        assert f"declares {declared:,} elements" in refusal(pickle.dumps({"G": huge}))
    beyond = Reduce(torch._utils._rebuild_tensor_v2, Reduce(torch.storage._load_from_bytes, legacy_storage(3, 3)), 0, (10**6,),
                    (1,), False, collections.OrderedDict())
    assert "damaged or truncated" in refusal(pickle.dumps({"G": beyond}))


def test_a_memo_index_far_beyond_the_objects_stored_is_refused_before_unpickling(tmp_path: Path) -> None:
    """The C unpickler sizes its memo by the index a PUT names: one LONG_BINPUT of 2**32 - 1 would have it
    allocate and clear 32 GiB. (2**26 here: were the check gone, this test would cost 1 GiB, not the machine.)"""
    path = tmp_path / "memo.pkl"
    path.write_bytes(b"\x80\x04K\x01r" + (2**26).to_bytes(4, "little") + b".")
    with pytest.raises(GanctlError, match="a memo index 67108864 beyond the 0 objects stored so far"):
        unpickler.read(path)


def test_damaged_snapshots_are_refused_in_one_message(tmp_path: Path) -> None:
    """Bytes changed where the pickle's opcodes (and its storages' headers) are, or the file cut short:
    each import ends in a GanctlError or, where the change hit a value, in a snapshot read as data."""
    data = PICKLE.read_bytes()
    opcodes = [position for _, _, position in pickletools.genops(data)]
    rng = random.Random(0)
    outcomes = collections.Counter()
    for _ in range(150):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            damaged[min(rng.choice(opcodes) + rng.randint(0, 4), len(data) - 1)] = rng.randrange(256)
        if rng.random() < 0.1:
            damaged = damaged[: rng.randrange(len(damaged))]
        path = tmp_path / "damaged.pkl"
        path.write_bytes(bytes(damaged))
        try:
            snapshot = unpickler.read(path)
            conversion.settings(snapshot.generator, snapshot.discriminator)
            outcomes["read"] += 1
        except GanctlError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100


def test_settings_ganctl_cannot_represent_are_named(imported: Path) -> None:
    snapshot = unpickler.read(PICKLE)
    kwargs = {**snapshot.generator.init_kwargs, "img_resolution": 48,
              "synthesis_kwargs": {**snapshot.generator.init_kwargs["synthesis_kwargs"], "architecture": "resnet", "fancy": 1}}
    generator = dataclasses.replace(snapshot.generator, init_kwargs=kwargs)
    with pytest.raises(GanctlError) as refused:
        conversion.settings(generator, snapshot.discriminator)
    message = str(refused.value)
    for named in ("synthesis_kwargs.architecture='resnet'", "synthesis_kwargs.fancy=1", "img_resolution=48",
                  "D's img_resolution=32 against G's 48"):
        assert named in message
    # The published models' sizes (FFHQ and MetFaces: 1024x1024) are ganctl's too.
    big = {name: dataclasses.replace(record, init_kwargs={**record.init_kwargs, "img_resolution": 1024})
           for name, record in (("G", snapshot.generator), ("D", snapshot.discriminator))}
    overrides, shape = conversion.settings(big["G"], big["D"])
    assert "dataset.image_size=1024" in overrides and shape["image_size"] == 1024
    # A value of another type never reaches the config as an override (a string could say anything there).
    kwargs = {**snapshot.generator.init_kwargs, "z_dim": "32 model=dcgan", "w_dim": True}
    with pytest.raises(GanctlError) as refused:
        conversion.settings(dataclasses.replace(snapshot.generator, init_kwargs=kwargs), snapshot.discriminator)
    assert "G's z_dim='32 model=dcgan' (ganctl: a whole number); G's w_dim=True (ganctl: a whole number)" in str(refused.value)


def test_a_pickle_without_d_imports_g_and_says_d_is_new(monkeypatch: pytest.MonkeyPatch) -> None:
    """Some published pickles hold G_ema alone: D is then the new network's own, and the lineage says so."""
    snapshot = unpickler.read(PICKLE)
    monkeypatch.setattr(conversion, "read", lambda path: dataclasses.replace(snapshot, discriminator=None, generator=snapshot.generator_ema,
                                                                          has=["G_ema"]))
    state, _ = conversion.convert(PICKLE, ["dataset=mnist"])
    assert state["lineage"]["new"] == {"discriminator": ["all (the pickle has no D)"]}
    assert state["lineage"]["parents"][0]["has"] == ["G_ema"]
    reference = torch.load(FIXTURE / "reference-images.pt", weights_only=True)
    images = next(Sampler.from_checkpoint(state, torch.device("cpu")).batches(reference["z"], 8, reference["classes"]))
    torch.testing.assert_close(images, reference["psi_1.0"].clamp(-1, 1), atol=1e-4, rtol=0)
