import dataclasses
import pickle

import pytest
import torch

from csrseg import build_model
from csrseg.engine.checkpoint import (
    CheckpointError,
    atomic_save,
    load_checkpoint,
    load_model_state,
    save_safetensors,
)
from tests.conftest import tiny_config


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"model": _Evil()}, handle)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_atomic_save_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"model": {"w": torch.ones(3)}}, path)
    atomic_save({"model": {"w": torch.zeros(3)}}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_shape_mismatch_names_the_keys_and_partial_load_reinitialises_them():
    source = build_model(tiny_config())  # 4 classes
    target = build_model(dataclasses.replace(tiny_config().model, num_classes=7))
    state = source.state_dict()
    with pytest.raises(CheckpointError, match=r"head\.cls_out\.weight: checkpoint \(4, 32, 3, 3\) vs model \(7, 32, 3, 3\)"):
        load_model_state(target, state, strict=True)
    before = target.head.cls_out.weight.clone()
    skipped = load_model_state(target, state, strict=False)
    assert skipped == ["head.cls_out.bias", "head.cls_out.weight"]
    assert torch.equal(target.head.cls_out.weight, before)
    assert torch.equal(target.head.mask_out[0].weight, source.head.mask_out[0].weight)


def test_safetensors_round_trip_with_config(tmp_path):
    model = build_model(tiny_config())
    path = save_safetensors(model.state_dict(), {"config": {"name": "x"}, "classes": ["a"]}, tmp_path / "m.safetensors")
    ckpt = load_checkpoint(path)
    assert ckpt["classes"] == ["a"] and ckpt["config"] == {"name": "x"}
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt["model"][k], v)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.pt"
    atomic_save({"model": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_checkpoint(path)
