"""Test metrics for classifiers: accuracy, per-class precision and recall, F1, confusion."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .data import Digits

NUM_CLASSES = 10


@dataclass
class Evaluation:
    """What a classifier got right and wrong on a test set.

    Attributes:
        accuracy: fraction correct, 0..1.
        error: test error in percent, 100·(1 − accuracy).
        precision, recall, f1: tensors of 10, one per class (0 where undefined, i.e. a
            class never predicted, or never present).
        macro_precision, macro_recall, macro_f1: their unweighted means over classes.
        confusion: 10×10 int64, rows = true class, columns = predicted class.
    """

    accuracy: float
    error: float
    precision: torch.Tensor
    recall: torch.Tensor
    f1: torch.Tensor
    macro_precision: float
    macro_recall: float
    macro_f1: float
    confusion: torch.Tensor


def confusion_matrix(
    true: torch.Tensor, predicted: torch.Tensor, num_classes: int = NUM_CLASSES
) -> torch.Tensor:
    """num_classes×num_classes int64 counts; entry [t, p] = how often class t was called p."""
    if true.shape != predicted.shape:
        raise ValueError(
            f"true and predicted labels differ in shape: {tuple(true.shape)} vs "
            f"{tuple(predicted.shape)}."
        )
    true, predicted = true.long().flatten().cpu(), predicted.long().flatten().cpu()
    for name, values in (("true", true), ("predicted", predicted)):
        if len(values) and (int(values.min()) < 0 or int(values.max()) >= num_classes):
            raise ValueError(f"{name} labels must lie in 0..{num_classes - 1}.")
    counts = torch.bincount(true * num_classes + predicted, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes)


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), 0.0)


def metrics_from_confusion(confusion: torch.Tensor) -> Evaluation:
    """All metrics of ``Evaluation`` read off a square confusion matrix (rows = true)."""
    confusion = confusion.long()
    counts = confusion.double()
    hits = counts.diagonal()
    total = counts.sum()
    accuracy = float(hits.sum() / total) if total > 0 else 0.0
    precision = _safe_divide(hits, counts.sum(dim=0))
    recall = _safe_divide(hits, counts.sum(dim=1))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return Evaluation(
        accuracy=accuracy,
        error=100.0 * (1.0 - accuracy),
        precision=precision.float(),
        recall=recall.float(),
        f1=f1.float(),
        macro_precision=float(precision.mean()),
        macro_recall=float(recall.mean()),
        macro_f1=float(f1.mean()),
        confusion=confusion,
    )


@torch.no_grad()
def predict(model: nn.Module, test: Digits, batch_size: int = 1000) -> torch.Tensor:
    """Predicted class per digit (int64 N), computed in eval mode on the model's device."""
    first = next(model.parameters(), None)
    device = first.device if first is not None else test.images.device
    was_training = model.training
    model.eval()
    try:
        outputs = [
            model(images.to(device)).argmax(dim=1).cpu() for images, _ in test.batches(batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(outputs)


def evaluate(model: nn.Module, test: Digits, batch_size: int = 1000) -> Evaluation:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix of ``model``."""
    if len(test) == 0:
        raise ValueError("test holds no digits.")
    return metrics_from_confusion(
        confusion_matrix(test.labels.cpu(), predict(model, test, batch_size))
    )
