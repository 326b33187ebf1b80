"""Distillation losses: KL(teacher || student) on logits (Hinton et al. 2015) and a hidden-state loss."""

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Forward KL of the temperature-softened distributions, mean over tokens, times T² (gradient scale)."""
    vocab = student_logits.shape[-1]
    student = F.log_softmax(student_logits.float().reshape(-1, vocab) / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float().reshape(-1, vocab) / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2


def hidden_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, projection=None) -> torch.Tensor:
    """MSE between (projected) student and teacher last hidden states, relative to the teacher's mean square."""
    student = student_hidden.float()
    if projection is not None:
        student = projection(student)
    teacher = teacher_hidden.float()
    return (student - teacher).pow(2).mean() / teacher.pow(2).mean().clamp_min(1e-12)


@torch.no_grad()
def least_squares_projection(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.nn.Linear:
    """A linear map student width -> teacher width fitted on one batch (Minitron trains such a map with the student)."""
    x = student_hidden.float().reshape(-1, student_hidden.shape[-1]).cpu()
    y = teacher_hidden.float().reshape(-1, teacher_hidden.shape[-1]).cpu()
    solution = torch.linalg.lstsq(x, y).solution  # [student, teacher]
    projection = torch.nn.Linear(x.shape[1], y.shape[1], bias=False)
    projection.weight.copy_(solution.T)
    return projection.to(student_hidden.device)
