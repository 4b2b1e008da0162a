"""CUDA checks: AMP training steps, channels_last and torch.compile against eager, the CUDA
distance path against the CPU one, and a DDP step over NCCL on one GPU.

Every test is marked `gpu`; tests/conftest.py skips them (with the reason) where torch
sees no CUDA device. They run the training's own code (`Trainer.train_step` on
`TrainBatches`) on tiny synthetic inputs. The helpers take the device as an argument, so
the same code paths can be tried on the CPU by hand (CPU autocast, gloo).

    python -m pytest -m gpu -rs tests/test_gpu.py
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu

AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


@pytest.fixture
def cuda():
    """CUDA device 0 with reproducible, full-precision fp32 kernels (no TF32, no cuDNN
    autotuning), restored afterwards: differences are then the configuration's own."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32 = False, True, False, False
    yield torch.device("cuda", 0)
    cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32 = saved


def tiny_data(n_ids: int = 8, per_id: int = 16, size=(64, 32), seed: int = 0):
    """A PreparedData over random uint8 images: `per_id` images per identity, half infrared."""
    import pandas as pd

    from vireid.harness.data import PreparedData

    rng = np.random.default_rng(seed)
    n = n_ids * per_id
    records = pd.DataFrame({"pid": np.repeat(np.arange(n_ids), per_id), "split": "train",
                            "modality": np.where(np.arange(n) % 2, "infrared", "visible")})
    images = rng.integers(0, 256, size=(n, *size, 3), dtype=np.uint8)
    return PreparedData(records=records, images=images, fingerprint="tiny", dataset="sysu", root=Path("."))


def epochs(sampler):
    """The sampler's batches, epoch after epoch."""
    for epoch in range(10**6):
        sampler.set_epoch(epoch)
        yield from sampler


def train_losses(device: torch.device, steps: int, amp: str | None = None, channels_last: bool = False,
                 compile_model: bool = False, wrap=None, backbone: str = "tiny", size=(64, 32), p: int = 4,
                 k: int = 4, seed: int = 0, init_seed: int = 0, lr: float = 3.5e-4):
    """Total loss of each of `steps` training steps from the initial weights of
    `init_seed` on the batches of `seed`, the model and the trainer. `wrap(core)` returns
    the model to run (DDP)."""
    from vireid.datasets.samplers import ModalityBalancedIdentitySampler
    from vireid.datasets.transforms import TrainAugment
    from vireid.harness.data import TrainBatches
    from vireid.harness.trainer import Trainer, build_optimizer, build_scheduler
    from vireid.methods import build_model

    data = tiny_data(size=size)
    idx = np.arange(len(data.images))
    sampler = ModalityBalancedIdentitySampler(data.records["pid"].to_numpy(), data.modality_codes, p=p, k=k, seed=seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    batches = TrainBatches(data, idx, sampler, TrainAugment(size, pad=4).to(device), device, generator, channels_last)
    torch.manual_seed(init_seed)
    core = build_model("idkl", num_classes=batches.num_classes, backbone=backbone, weights="none", last_stride=1,
                       loss=None, profile="code").to(device)
    if channels_last:
        core = core.to(memory_format=torch.channels_last)
    model = wrap(core) if wrap is not None else core
    if compile_model:
        model = torch.compile(model)
    optimizer = build_optimizer(core.parameters(), "adam", lr, 5e-3)
    trainer = Trainer(model, core, optimizer, build_scheduler(optimizer, [], 0.1), batches, epochs=1, device=device,
                      hooks=[], amp_dtype=AMP.get(amp))
    model.train()
    losses = [trainer.train_step(batch)["total"] for _, batch in zip(range(steps), epochs(sampler))]
    return losses, core, trainer


AMP_RUN = {"steps": 12, "lr": 2e-3}  # the tiny backbone at 64 x 32, as the CPU-sized defaults


@functools.lru_cache(maxsize=None)
def fp32_curve(device: str, init_seed: int) -> tuple[float, ...]:
    return tuple(train_losses(torch.device(device), init_seed=init_seed, **AMP_RUN)[0])


def optimizer_steps(trainer) -> int:
    """Updates Adam applied (a step the grad scaler skips leaves its count unchanged)."""
    return min(int(state["step"]) for state in trainer.optimizer.state.values())


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_steps_are_finite_and_close_to_fp32(cuda, amp):
    """Twelve steps under autocast (fp16 with the grad scaler): every loss and weight
    finite, the first loss (before any update) within 2 % of fp32's, and the curve closer
    to fp32's than fp32 from other initial weights is (the seed-to-seed noise)."""
    ref = np.asarray(fp32_curve(str(cuda), 0))
    noise = np.abs(np.asarray(fp32_curve(str(cuda), 1)) - ref).mean()
    losses, core, trainer = train_losses(cuda, amp=amp, **AMP_RUN)
    assert all(math.isfinite(v) for v in losses), losses
    assert all(torch.isfinite(p).all() for p in core.parameters())
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    # the scaler halves its initial 2**16 scale, skipping those updates, until gradients fit
    assert optimizer_steps(trainer) >= AMP_RUN["steps"] // 2, "the grad scaler skipped most updates"
    assert losses[0] == pytest.approx(ref[0], rel=0.02)
    diff = np.abs(np.asarray(losses) - ref).mean()
    assert diff < noise, f"{amp}: mean |loss - fp32 loss| {diff:.4f}, fp32 seed-to-seed {noise:.4f}"


def test_channels_last_and_compile_give_the_eager_loss(cuda):
    """fp32 (no TF32): channels_last, and channels_last + torch.compile, follow eager's loss
    over three steps to 1e-3 relative. The modality discriminators use dropout; inductor
    draws its own random numbers unless `fallback_random`, which makes it use eager's."""
    import torch._inductor.config as inductor_config

    eager, _, _ = train_losses(cuda, steps=3)
    last, _, _ = train_losses(cuda, steps=3, channels_last=True)
    with inductor_config.patch(fallback_random=True):
        compiled, _, _ = train_losses(cuda, steps=3, channels_last=True, compile_model=True)
    torch._dynamo.reset()
    np.testing.assert_allclose(last, eager, rtol=1e-3, err_msg="channels_last vs eager")
    np.testing.assert_allclose(compiled, eager, rtol=1e-3, err_msg="channels_last + compile vs eager")


def test_cuda_distances_equal_the_cpu_ones(cuda, monkeypatch):
    from vireid.harness.evaluation import distance
    from vireid.harness.evaluation.distance import squared_euclidean

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((300, 128), dtype=np.float32), rng.standard_normal((211, 128), dtype=np.float32)
    for dtype, tol in (("float32", 1e-4), ("float64", 1e-10)):
        cpu = squared_euclidean(x, y, dtype=dtype, device="cpu")
        gpu = squared_euclidean(x, y, dtype=dtype, device="cuda")
        assert gpu.dtype == cpu.dtype == np.dtype(dtype)
        np.testing.assert_allclose(gpu, cpu, rtol=0, atol=tol)
        np.testing.assert_allclose(squared_euclidean(x, None, dtype=dtype, normalize=True, device="cuda"),
                                   squared_euclidean(x, None, dtype=dtype, normalize=True, device="cpu"),
                                   rtol=0, atol=tol)
    # Small integer features: every product and sum is exact, so both paths give the same
    # bits, also when the GPU result comes back in several row blocks.
    xi, yi = (rng.integers(-4, 5, (n, 16)).astype(np.float32) for n in (300, 211))
    cpu = squared_euclidean(xi, yi, device="cpu")
    np.testing.assert_array_equal(squared_euclidean(xi, yi, device="cuda"), cpu)
    monkeypatch.setattr(distance, "_GPU_BLOCK_BYTES", 64 * 211 * 4)  # 64 rows per block
    np.testing.assert_array_equal(squared_euclidean(xi, yi, device="cuda"), cpu)
    np.testing.assert_array_equal(squared_euclidean(xi, None, device="cuda"), squared_euclidean(xi, None, device="cpu"))


def test_cuda_evaluation_equals_the_cpu_one(cuda):
    """A whole protocol evaluation (and its re-ranking) with CUDA distances: the same
    results as on the CPU, ties included (integer features: exact distances)."""
    from vireid.harness.evaluation.evaluate import evaluate_protocol_arrays

    rng = np.random.default_rng(1)
    ids = np.repeat(np.arange(20), 6)
    centres = rng.integers(-3, 4, (20, 16))
    feats = lambda: (centres[ids] + rng.integers(-2, 3, (len(ids), 16))).astype(np.float32)  # noqa: E731
    n = len(ids)
    arrays = {"query_feats": feats(), "query_ids": ids, "query_cams": np.full(n, 3),
              "query_paths": np.array([f"q/{i}.bmp" for i in range(n)]), "gallery_feats": feats(),
              "gallery_ids": ids, "gallery_cams": np.full(n, 2),
              "gallery_paths": np.array([f"g/{i}.bmp" for i in range(n)])}
    for rerank in (False, True):
        cpu = evaluate_protocol_arrays(arrays, "regdb/i2v", rerank=rerank, device="cpu")
        gpu = evaluate_protocol_arrays(arrays, "regdb/i2v", rerank=rerank, device="cuda")
        assert gpu == cpu, f"rerank={rerank}"


def ddp_matches_plain(device: torch.device, backend: str, store: Path, steps: int = 2) -> None:
    """One process, a real process group: the harness's DDP wrapper gives the plain model's
    losses and weights (the all-reduce of one rank averages over one)."""
    import torch.distributed as tdist

    from vireid.harness import distributed as dist

    plain_losses, plain, _ = train_losses(device, steps)
    tdist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1)
    try:
        assert (dist.world_size(), dist.rank()) == (1, 0)
        losses, core, trainer = train_losses(device, steps, wrap=lambda m: dist.ddp(m, device))
        assert isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
        local = np.arange(6, dtype=np.float32).reshape(3, 2)
        np.testing.assert_array_equal(dist.gather_rows(local, 3), local)
        dist.barrier()
    finally:
        tdist.destroy_process_group()
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-5)
    for (name, a), b in zip(plain.state_dict().items(), core.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")  # noqa: B023 (called now)


def test_ddp_step_with_nccl_on_one_gpu(cuda, tmp_path):
    import torch.distributed as tdist

    if not tdist.is_nccl_available():
        pytest.skip("this torch build has no NCCL")
    ddp_matches_plain(cuda, "nccl", tmp_path / "store")
