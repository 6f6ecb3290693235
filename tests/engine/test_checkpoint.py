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
    with pytest.raises(CheckpointError, match="evil.pt") as info:
        load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()
    assert "weights_only" not in str(info.value)  # torch's advice to load it unsafely is not passed on


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


@pytest.mark.parametrize("name", ["empty.pt", "empty.safetensors"])
def test_empty_checkpoint_is_named_as_empty(tmp_path, name):
    path = tmp_path / name
    path.touch()
    with pytest.raises(CheckpointError, match=f"{name}: empty file"):
        load_checkpoint(path)


def test_checkpoint_error_without_a_message_is_still_one_line(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x80\x02")  # pickle's protocol opcode, then nothing: torch.load raises an EOFError with no text
    with pytest.raises(CheckpointError, match=r"junk.pt: not a loadable checkpoint \(EOFError\)$") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_safetensors_export_makes_its_folder():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = save_safetensors({"w": torch.ones(3)}, {"classes": ["a"]}, f"{tmp}/new/folder/m.safetensors")
        assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))


def _disk_usage_with_free(free):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    return lambda path: usage(10**12, 10**12 - free, free)


def test_too_little_free_space_is_refused_before_writing_and_names_the_numbers(tmp_path, monkeypatch):
    from csrseg.engine import checkpoint

    path = tmp_path / "last.pt"
    atomic_save({"model": {"w": torch.ones(1000)}}, path)
    good = path.read_bytes()
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", _disk_usage_with_free(4096))
    with pytest.raises(checkpoint.CheckpointWriteError) as caught:
        atomic_save({"model": {"w": torch.zeros(1000)}}, path, if_failed="the old one is intact")
    message = str(caught.value)
    assert str(path) in message and "not enough disk space" in message and "4096 bytes" in message
    assert "needs about" in message and message.endswith("the old one is intact") and "\n" not in message
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_enospc_in_the_middle_of_a_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    import errno

    from csrseg.engine import checkpoint

    path = tmp_path / "last.pt"
    atomic_save({"model": {"w": torch.ones(10000)}}, path)
    good = path.read_bytes()
    original = checkpoint._RecordingWriter.write

    def write_until_full(self, data):
        if self.written > 1000:  # the disk fills part-way through the new file
            self.error = OSError(errno.ENOSPC, "No space left on device")
            raise self.error
        return original(self, data)

    monkeypatch.setattr(checkpoint._RecordingWriter, "write", write_until_full)
    with pytest.raises(checkpoint.CheckpointWriteError, match=r"last\.pt: could not write the checkpoint \(No space left"):
        atomic_save({"model": {"w": torch.zeros(10000)}}, path)
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_full_disk_during_training_exits_2_naming_the_good_checkpoint_and_resume(synth_root, tmp_path, monkeypatch, capsys):
    import shutil

    from csrseg.cli import main
    from csrseg.config import save_config
    from csrseg.engine import checkpoint

    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(epochs=1, batch_size=4, warmup_iters=1), cfg_path)
    calls = {"n": 0}
    real = shutil.disk_usage

    def fills_after_first_save(path):
        calls["n"] += 1
        return real(path) if calls["n"] == 1 else _disk_usage_with_free(100)(path)

    monkeypatch.setattr(checkpoint.shutil, "disk_usage", fills_after_first_save)
    run = tmp_path / "run"
    argv = ["train", "--config", str(cfg_path), "--data", str(synth_root), "--out", str(run), "--device", "cpu",
            "--no-val", "--checkpoint-interval", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith("csrseg: error:")
    assert f"{run / 'last.pt'} (iteration 1) is intact" in err and "100 bytes" in err
    assert err.endswith(f"continue with `csrseg train --resume {run}`")  # the run recorded its dataset
    assert load_checkpoint(run / "last.pt")["iteration"] == 1
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
