# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · MNIST evaluation: what sparsity costs
#
# We train LeNet-300-100, measure it properly (accuracy, per-class precision and recall,
# confusion matrix), sweep sparsity for every criterion, compare with published numbers,
# and end with an explorer you can drive with a slider.

# %%
# %matplotlib inline
import torch

import gradprune_lite as gp

torch.set_num_threads(2)
torch.manual_seed(0)

train, test = gp.mnist("train", verbose=False), gp.mnist("test", verbose=False)
print("data:", train.source, "|", test.source)
print(f"{len(train):,} training and {len(test):,} test digits")
dense = gp.models.lenet_300_100(seed=0)
history = gp.fit(dense, train, epochs=2, lr=0.1, schedule="cosine", seed=0, progress=False)
print("training loss per epoch:", [round(loss, 3) for loss in history["loss"]])

# %% [markdown]
# ## Accuracy, per-class precision and recall
#
# Precision of class $c$: of the digits we called $c$, the fraction that are $c$.
# Recall: of the true $c$s, the fraction we found.

# %%
dense_eval = gp.evaluate(dense, test)
print(
    f"accuracy {dense_eval.accuracy:.2%} (error {dense_eval.error:.2f}%), macro F1 {dense_eval.macro_f1:.3f}"
)
print("class     " + " ".join(f"{c:>6d}" for c in range(10)))
print("precision " + " ".join(f"{p:6.3f}" for p in dense_eval.precision.tolist()))
print("recall    " + " ".join(f"{r:6.3f}" for r in dense_eval.recall.tolist()))
assert dense_eval.error < 8
assert int(dense_eval.confusion.sum()) == len(test)

# %%
gp.plots.confusion(dense_eval.confusion, "dense LeNet-300-100")

# %% [markdown]
# ## Test error against sparsity, for every criterion
#
# One-shot: score the trained model on 1,000 digits, prune globally, evaluate on the
# first 5,000 test digits, **no** fine-tuning. This isolates how good each ranking is.

# %%
levels = [0.5, 0.8, 0.9, 0.95, 0.98]
score_batches = list(train.take(1000).batches(batch_size=250))
criteria = ["magnitude", "gradient", "taylor", "fisher", "snip", "grasp", "synflow", "random"]
sweep, sweep_test = {}, test.take(5000)
for criterion in criteria:
    scores = gp.score(dense, criterion, score_batches)
    sweep[criterion] = []
    for sparsity in levels:
        pruned = gp.models.lenet_300_100()
        pruned.load_state_dict(dense.state_dict())
        gp.apply_masks(pruned, gp.global_masks(scores, sparsity))
        sweep[criterion].append(gp.evaluate(pruned, sweep_test).error)
print("test error (%)  " + " ".join(f"{s:>6.0%}" for s in levels))
for criterion, errors in sweep.items():
    print(f"{criterion:15s} " + " ".join(f"{e:6.2f}" for e in errors))
assert sweep["magnitude"][0] < dense_eval.error + 1
assert sweep["random"][-1] > sweep["magnitude"][-1] + 20

# %%
gp.plots.curves([100 * s for s in levels], sweep, "sparsity (%)", "test error (%)",
                "one-shot pruning, no fine-tuning", logy=True)  # fmt: skip

# %% [markdown]
# ## Next to the published numbers
#
# Published test errors (%) after full training: SNIP (Lee et al. 2019, Table 1) and
# Han et al. 2015. Ours: prune the dense model above, fine-tune one epoch on 10,000 digits
# (a fraction of the papers' training), and evaluate.

# %%
anchors = [
    # model, method, sparsity, published error (%), source
    ("LeNet-300-100", "dense", 0.0, 1.7, "SNIP Table 1"),
    ("LeNet-300-100", "snip", 0.95, 1.6, "SNIP Table 1"),
    ("LeNet-300-100", "snip", 0.98, 2.4, "SNIP Table 1"),
    ("LeNet-300-100", "magnitude", 0.92, 1.59, "Han et al. 2015"),
    ("LeNet-5-Caffe", "dense", 0.0, 0.9, "SNIP Table 1"),
    ("LeNet-5-Caffe", "snip", 0.98, 0.8, "SNIP Table 1"),
    ("LeNet-5-Caffe", "snip", 0.99, 1.1, "SNIP Table 1"),
    ("LeNet-5-Caffe", "magnitude", 0.92, 0.77, "Han et al. 2015"),
]
ours = {}
for model_name, method, sparsity, _, _ in anchors:
    if model_name != "LeNet-300-100":
        continue
    if method == "dense":
        ours[(method, sparsity)] = dense_eval.error
        continue
    tuned = gp.models.lenet_300_100()
    tuned.load_state_dict(dense.state_dict())
    gp.prune(tuned, method, sparsity, score_batches)
    gp.fit(tuned, train.take(10_000), epochs=1, lr=0.05, seed=0, progress=False)
    ours[(method, sparsity)] = gp.evaluate(tuned, test).error
print(f"{'model':14s} {'method':10s} {'sparsity':>8s} {'published':>9s} {'ours':>6s}  source")
for model_name, method, sparsity, published, source in anchors:
    mine = ours.get((method, sparsity)) if model_name == "LeNet-300-100" else None
    mine_text = f"{mine:6.2f}" if mine is not None else "     —"
    print(f"{model_name:14s} {method:10s} {sparsity:8.0%} {published:9.2f} {mine_text}  {source}")
assert ours[("magnitude", 0.92)] < dense_eval.error + 2
assert ours[("snip", 0.95)] < ours[("snip", 0.98)] + 0.5

# %% [markdown]
# LeNet-5 is left to the command line (`gradprune-lite compare --model lenet5`): its
# convolutions take minutes to train on a laptop CPU, too long for a notebook.
#
# ## Explore it yourself
#
# Move the slider (dense at the high end), pick a criterion, toggle a short fine-tune.
# The readout shows accuracy, macro precision and the weights left; the image shows
# which input pixels the first layer still listens to, and per-class precision. Results
# are cached, so moving back is instant. (Evaluated on the first 2,000 test digits.)

# %%
# NBVAL_IGNORE_OUTPUT
explorer = gp.widgets.sparsity_explorer(dense, train, test.take(2000))
explorer.box

# %% [markdown]
# The same controls can be driven from code, which is how the tests check them:

# %%
before = explorer.readout.value
explorer.slider.value = 0.99
print(gp.widgets.readout_text(explorer))
assert explorer.readout.value != before
explorer.criterion.value = "random"
print(gp.widgets.readout_text(explorer))
explorer.slider.value = 0.0
print(gp.widgets.readout_text(explorer))

# %% [markdown]
# Back to a sensible starting point for your own exploration: magnitude at 95%.

# %%
explorer.criterion.value = "magnitude"
explorer.slider.value = 0.95
print(gp.widgets.readout_text(explorer))
