"""The EMA follows the optimizer's fp32 master weights when DeepSpeed trains in bf16, for ZeRO 0-3:
a real DeepSpeed engine on the CPU (one rank, gloo on 127.0.0.1)."""

from __future__ import annotations

import os

import pytest
import torch

from videomar.platform.processes import free_port
from videomar.platform.training.ema import EMA, deepspeed_master, master_weights

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def dist():
    import deepspeed

    from videomar.platform.training.engine import skip_shm_comm_op

    skip_shm_comm_op()  # as every stage does (engine.py): no op build to wait on
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    deepspeed.init_distributed("gloo")
    yield
    torch.distributed.destroy_process_group()


def bf16_engine(stage: int):
    import deepspeed

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
    config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": stage},
              "zero_allow_untested_optimizer": True, "bf16": {"enabled": True}}
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3),
                                      config=config)
    for _ in range(3):  # small steps: the fp32 masters move by less than a bf16 rounding step
        engine.backward(engine(torch.randn(2, 8).bfloat16()).float().square().sum())
        engine.step()
    return model, engine


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_bf16_ema_reads_the_fp32_master_weights(dist, stage):
    model, engine = bf16_engine(stage)
    params = dict(model.named_parameters())
    masters = dict(master_weights(model, deepspeed_master(engine.optimizer)))
    assert set(masters) == set(params)
    assert all(v.dtype == torch.float32 for v in masters.values())
    assert [masters[k].numel() for k in sorted(masters)] == [8, 64, 8, 8]  # whole, not a rank's partition
    # The masters round to the bf16 weights, and carry the bits bf16 drops.
    w = masters["0.weight"].reshape(8, 8)
    if stage < 3:  # under ZeRO-3 the module holds partitions only
        assert torch.equal(w.bfloat16(), params["0.weight"].data)
    assert not torch.equal(w, w.bfloat16().float())
    ema = EMA([(k, torch.zeros_like(v)) for k, v in masters.items()], rate=0.5)
    ema.update(master_weights(model, deepspeed_master(engine.optimizer)))
    assert torch.equal(ema.shadow["0.weight"], 0.5 * masters["0.weight"].cpu())
