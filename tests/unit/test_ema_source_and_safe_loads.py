"""The EMA reads a given fp32 source, and under bf16 the optimizer's master copy; checkpoint
files load without running code."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from videomar.errors import ConfigError
from videomar.artifacts import checkpoint
from videomar.platform.training.ema import EMA, master_weights


def test_ema_update_reads_the_given_fp32_source():
    ema = EMA([("w", torch.zeros(3))], rate=0.75)
    ema.update([("w", torch.tensor([4.0, 8.0, 1.0 + 2**-20]))])  # 1 + 2**-20 has no bf16 form
    assert torch.equal(ema.shadow["w"], 0.25 * torch.tensor([4.0, 8.0, 1.0 + 2**-20]))


def test_fp32_weights_are_read_from_the_module_and_bf16_ones_from_the_master_copy():
    net = torch.nn.Linear(2, 2)
    assert all(v is p for (_, v), p in zip(master_weights(net), net.parameters()))
    exact = {id(p): (p.detach() + 2**-20).float() for p in net.parameters()}  # the fp32 masters
    net.bfloat16()  # what DeepSpeed does to the module under bf16
    exact = dict(zip((id(p) for p in net.parameters()), exact.values()))
    weights = dict(master_weights(net, lambda p: exact.get(id(p))))
    assert all(torch.equal(weights[n], exact[id(p)]) for n, p in net.named_parameters())
    ema = EMA([(n, torch.zeros(p.shape)) for n, p in net.named_parameters()], rate=0.0)
    ema.update(master_weights(net, lambda p: exact.get(id(p))))
    assert torch.equal(ema.shadow["weight"], exact[id(net.weight)])  # not its bf16 rounding
    with pytest.raises(RuntimeError, match="weight: a torch.bfloat16 parameter whose optimizer keeps no fp32"):
        dict(master_weights(net, lambda p: None))


class RunsCode:
    """Unpickling this calls Path.touch: the kind of payload weights_only must refuse."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_files_holding_code_are_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    payload = tmp_path / "evil.pt"
    torch.save({"module": {"w": torch.zeros(1)}, "x": RunsCode(marker)}, payload)
    with checkpoint.weights_only_loads():  # as DeepSpeed loads: weights_only=False, forced safe
        with pytest.raises(pickle.UnpicklingError):
            torch.load(payload, map_location="cpu", weights_only=False)
    assert not marker.exists()
    assert checkpoint.FORCE_WEIGHTS_ONLY not in __import__("os").environ  # restored after

    ds_dir = tmp_path / "ckpt" / checkpoint.DS_DIR
    (ds_dir / checkpoint.DS_TAG).mkdir(parents=True)
    payload.rename(ds_dir / checkpoint.DS_TAG / "mp_rank_00_model_states.pt")
    (tmp_path / "ckpt" / checkpoint.STATE_FILE).write_text("{}")
    with pytest.raises(ConfigError, match="init_from.checkpoint: .* holds more than tensors"):
        checkpoint.checkpoint_weights(str(tmp_path / "ckpt"), ["weights"])
    assert not marker.exists()

    torch.save({"module": {"model.w": torch.ones(2)}}, ds_dir / checkpoint.DS_TAG / "mp_rank_00_model_states.pt")
    assert torch.equal(checkpoint.checkpoint_weights(str(tmp_path / "ckpt"), ["weights"])["weights"]["w"], torch.ones(2))
