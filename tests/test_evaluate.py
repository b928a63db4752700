"""gp.evaluate: metrics against a small example worked by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradprune_lite as gp
from gradprune_lite.experiment.evaluate import confusion_matrix, metrics_from_confusion

# Eight digits of classes 0, 1, 2 (the other seven classes never occur).
TRUE = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
PRED = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0])


class Lookup(nn.Module):
    """A 'model' that answers PRED[i] for the digit whose first pixel holds i."""

    def forward(self, images):
        index = images[:, 0, 0, 0].long()
        return nn.functional.one_hot(PRED[index], 10).float()


def digits():
    images = torch.zeros(len(TRUE), 1, 28, 28)
    images[:, 0, 0, 0] = torch.arange(len(TRUE)).float()
    return gp.Digits(images, TRUE.clone(), "hand-made", False)


def test_confusion_matrix_counts_true_rows_predicted_columns():
    confusion = confusion_matrix(TRUE, PRED)
    assert confusion.dtype == torch.int64 and confusion.shape == (10, 10)
    # By hand: class 0 → [2 right, 1 called '1']; 1 → [1 right, 1 called '2'];
    # 2 → [2 right, 1 called '0'].
    assert confusion[:3, :3].tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    assert int(confusion.sum()) == 8


def test_metrics_by_hand():
    result = gp.evaluate(Lookup(), digits())
    assert result.accuracy == pytest.approx(5 / 8)
    assert result.error == pytest.approx(100 * 3 / 8)
    # precision = right / predicted as that class; recall = right / truly that class.
    assert result.precision[:3].tolist() == pytest.approx([2 / 3, 1 / 2, 2 / 3])
    assert result.recall[:3].tolist() == pytest.approx([2 / 3, 1 / 2, 2 / 3])
    assert result.f1[:3].tolist() == pytest.approx([2 / 3, 1 / 2, 2 / 3])
    # Classes never seen nor predicted count as 0, so the macro mean is over 10 classes.
    assert result.macro_precision == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 10)
    assert result.macro_f1 == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 10)
    assert torch.equal(result.confusion, confusion_matrix(TRUE, PRED))


def test_precision_and_recall_differ_when_errors_are_one_sided():
    true = torch.tensor([0, 0, 0, 0, 1])
    pred = torch.tensor([0, 0, 0, 1, 1])
    result = metrics_from_confusion(confusion_matrix(true, pred))
    assert result.precision[:2].tolist() == pytest.approx([1.0, 0.5])
    assert result.recall[:2].tolist() == pytest.approx([0.75, 1.0])
    assert result.f1[0] == pytest.approx(2 * 1.0 * 0.75 / 1.75)


def test_evaluate_restores_training_mode():
    model = Lookup().train()
    gp.evaluate(model, digits())
    assert model.training


def test_labels_outside_the_classes_are_an_error():
    with pytest.raises(ValueError, match="0..9"):
        confusion_matrix(torch.tensor([0, 10]), torch.tensor([0, 1]))
