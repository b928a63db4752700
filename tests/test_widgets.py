"""The sparsity explorer: driven by setting widget values, as a user's slider moves would."""

import time

import pytest
import torch

import gradprune_lite as gp


@pytest.fixture(scope="module")
def explorer():
    torch.set_num_threads(2)
    train = gp.mnist("train", verbose=False).take(600)
    test = gp.mnist("test", verbose=False).take(300)
    model = gp.models.lenet_300_100(seed=0)
    gp.fit(model, train, epochs=1, lr=0.05, seed=0, progress=False)
    return gp.widgets.sparsity_explorer(
        model, train, test, criteria=("magnitude", "taylor", "random"), finetune_samples=200
    )


def test_starts_dense_and_shows_everything(explorer):
    assert explorer.slider.value == 0.0
    assert "266,200</b> of 266,200" in explorer.readout.value
    assert explorer.mask_image.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_slider_move_updates_readout_and_image_to_the_true_count(explorer):
    image_before = explorer.mask_image.value
    explorer.slider.value = 0.9
    expected = round(0.1 * 266_200)  # gp.global_masks prunes exactly round(s·N)
    assert f"remaining weights <b>{expected:,}</b>" in explorer.readout.value
    assert explorer.mask_image.value != image_before
    explorer.slider.value = 0.0


def test_readout_accuracy_matches_an_independent_evaluation(explorer):
    explorer.criterion.value = "magnitude"
    explorer.slider.value = 0.95
    pruned = gp.models.lenet_300_100()
    pruned.load_state_dict(explorer.model.state_dict())
    gp.apply_masks(pruned, gp.global_masks(gp.score(pruned, "magnitude"), 0.95))
    accuracy = gp.evaluate(pruned, explorer.test).accuracy
    assert f"accuracy <b>{accuracy:.2%}</b>" in explorer.readout.value
    explorer.slider.value = 0.0


def test_criterion_and_finetune_change_the_result(explorer):
    explorer.slider.value = 0.98
    magnitude = explorer.readout.value
    explorer.criterion.value = "random"
    assert explorer.readout.value != magnitude and "<b>random</b>" in explorer.readout.value
    explorer.finetune.value = True
    assert "fine-tune" in explorer.readout.value
    assert ("random", 0.98, True) in explorer.results
    explorer.finetune.value = False
    explorer.criterion.value = "magnitude"
    explorer.slider.value = 0.0


def test_model_is_never_modified(explorer):
    explorer.slider.value = 0.99
    assert gp.sparsity(explorer.model) == 0.0
    explorer.slider.value = 0.0


def test_cached_moves_are_fast(explorer):
    explorer.slider.value = 0.8  # first visit computes
    explorer.slider.value = 0.0
    start = time.perf_counter()
    explorer.slider.value = 0.8  # cached: only the redraw
    assert time.perf_counter() - start < 1.0


def test_widgets_carry_stable_css_classes(explorer):
    assert "gp-sparsity" in explorer.slider._dom_classes
    assert "gp-readout" in explorer.readout._dom_classes
    assert "gp-mask-image" in explorer.mask_image._dom_classes


def test_slider_is_dense_at_the_high_end(explorer):
    values = [value for _, value in explorer.slider.options]
    assert values[0] == 0.0 and values[-1] >= 0.999
    assert sum(v >= 0.9 for v in values) >= 5


def test_bad_levels_raise_a_clear_error():
    model = gp.models.lenet_300_100(seed=0)
    digits = gp.mnist("test", verbose=False).take(10)
    with pytest.raises(ValueError, match="0.9 for 90%"):
        gp.widgets.sparsity_explorer(model, digits, digits, levels=(0.0, 90.0))


def test_first_layer_image_is_the_kept_fraction_per_pixel():
    mask = torch.zeros(300, 784, dtype=torch.bool)
    mask[:150, 0] = True
    image = gp.widgets.first_layer_image(mask)
    assert image.shape == (28, 28)
    assert image[0, 0] == 0.5 and image.sum() == 0.5
