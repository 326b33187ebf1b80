"""The distillation loop: a frozen teacher, a student trained on its soft targets (AdamW, warmup + cosine).

What trains has fp32 master weights: when it came in half precision the student is upcast for the run and
cast back after (LoRA adapters are fp32 already, so their frozen base weights keep their dtype); on a GPU
the forward passes run under bf16 autocast and gradient checkpointing saves activation memory.
"""

import contextlib
import math
import time

import torch

from compressor.heal.data import Batches
from compressor.heal.loss import hidden_loss, kd_loss, least_squares_projection


def lr_factor(step: int, steps: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to `min_ratio` at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup - 1)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _autocast(device: torch.device, mode: str):
    use = mode == "bf16" or (mode == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if use else contextlib.nullcontext()


def _forward(model, ids, want_hidden: bool):
    out = model(input_ids=ids, use_cache=False, output_hidden_states=want_hidden)
    return out.logits, (out.hidden_states[-1] if want_hidden else None)


def _loss(student, teacher, ids, settings, projection, autocast):
    want_hidden = settings.hidden_weight > 0
    with torch.no_grad(), autocast():
        teacher_logits, teacher_hidden = _forward(teacher, ids, want_hidden)
    with autocast():
        student_logits, student_hidden = _forward(student, ids, want_hidden)
    loss = kd_loss(student_logits, teacher_logits, settings.temperature)
    if want_hidden:
        loss = loss + settings.hidden_weight * hidden_loss(student_hidden, teacher_hidden, projection)
    return loss


@torch.no_grad()
def heldout_kd(student, teacher, windows: torch.Tensor, batch: int, temperature: float, device, autocast) -> float:
    """Mean KD loss (logits only) on held-back windows."""
    total = 0.0
    for start in range(0, len(windows), batch):
        ids = windows[start : start + batch].to(device)
        with autocast():
            s_logits, _ = _forward(student, ids, False)
            t_logits, _ = _forward(teacher, ids, False)
        total += float(kd_loss(s_logits, t_logits, temperature)) * len(ids)
    return total / len(windows)


def distill(student, teacher, train: torch.Tensor, holdout: torch.Tensor, settings, device,
            progress=lambda message: None, frozen=(), trainable=None) -> dict:
    """Train `student` toward `teacher` for `settings.steps` steps; returns what happened (losses, time).

    Parameters in `frozen` (e.g. the embeddings) keep their values and get no gradients or optimizer state;
    `trainable` (e.g. LoRA adapters), when given, is all that trains.
    """
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    autocast = lambda: _autocast(device, settings.autocast)  # noqa: E731
    teacher.eval().requires_grad_(False)
    frozen_ids = {id(p) for p in frozen}
    trainable = list(trainable) if trainable is not None else [p for p in student.parameters()
                                                               if id(p) not in frozen_ids]
    input_dtype = next(student.parameters()).dtype
    upcast = any(p.dtype != torch.float32 for p in trainable)
    if upcast:
        student.float()  # in place: the parameters in `trainable` stay the same objects
    before = heldout_kd(student.eval(), teacher, holdout, settings.batch, settings.temperature, device, autocast)
    progress(f"heal: held-back KD loss before {before:.4f}; {settings.steps} steps of {settings.batch}x{settings.seq_len} tokens")

    batches = Batches(train, settings.batch, settings.seed)
    projection = None
    if settings.hidden_weight > 0 and student.config.hidden_size != teacher.config.hidden_size:
        ids = train[: settings.batch].to(device)
        with torch.no_grad(), autocast():
            projection = least_squares_projection(_forward(student, ids, True)[1], _forward(teacher, ids, True)[1])
    trained_ids = {id(p) for p in trainable}
    trainable += list(projection.parameters()) if projection else []
    requires_grad = {p: p.requires_grad for p in student.parameters()}
    for p in student.parameters():
        p.requires_grad_(id(p) in trained_ids)
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.95))
    warmup = settings.warmup_steps if settings.warmup_steps is not None else max(1, settings.steps // 10)
    if settings.gradient_checkpointing:
        student.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    student.train()
    losses: list[float] = []
    every = max(1, settings.steps // 20)
    try:
        for step in range(settings.steps):
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * lr_factor(step, settings.steps, warmup, settings.min_lr_ratio)
            loss = _loss(student, teacher, batches.next().to(device), settings, projection, autocast)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
            optimizer.step()
            losses.append(loss.item())
            if (step + 1) % every == 0 or step + 1 == settings.steps:
                done = (step + 1) / settings.steps
                elapsed = time.perf_counter() - started
                bar = "#" * round(20 * done) + "-" * (20 - round(20 * done))
                progress(f"heal [{bar}] {step + 1}/{settings.steps} loss {sum(losses[-every:]) / len(losses[-every:]):.4f}"
                         f" ({elapsed:.0f} s, ~{elapsed / done - elapsed:.0f} s left)")
    finally:
        optimizer.zero_grad(set_to_none=True)
        del optimizer
        if settings.gradient_checkpointing:
            student.gradient_checkpointing_disable()
        for p, flag in requires_grad.items():
            p.requires_grad_(flag)
        student.eval()
    after = heldout_kd(student, teacher, holdout, settings.batch, settings.temperature, device, autocast)
    if upcast:
        student.to(input_dtype)
    tenth = max(1, len(losses) // 10)
    return {"steps": settings.steps, "trained_params": sum(p.numel() for p in trainable), "tokens": settings.steps * settings.batch * settings.seq_len,
            "train_windows": len(train), "passes_over_data": round(settings.steps * settings.batch / len(train), 2),
            "heldout_windows": len(holdout), "heldout_kd_before": round(before, 5), "heldout_kd_after": round(after, 5),
            "train_loss_first": round(sum(losses[:tenth]) / tenth, 5),
            "train_loss_last": round(sum(losses[-tenth:]) / tenth, 5),
            "seconds": round(time.perf_counter() - started, 1),
            "scores": {"train_loss": [round(v, 5) for v in losses]}}
