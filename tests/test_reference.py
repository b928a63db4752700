"""The dense reference: validation split, fingerprint and the on-disk cache."""

from __future__ import annotations

import pytest
import torch

import gradprune_lite as gp
from gradprune_lite.experiment.reference import MODEL_BUDGETS, REFERENCE_BUDGET, fingerprint


def test_splits_hold_out_the_end_of_the_training_digits():
    train, validation, test = gp.splits()
    full = gp.mnist("train", verbose=False)
    assert len(train) + len(validation) == len(full)
    assert round(len(full) / 12) == len(validation)
    assert torch.equal(validation.labels, full.labels[len(train) :])
    assert len(test) == len(gp.mnist("test", verbose=False))
    assert "validation" in validation.source


def test_fingerprint_tells_data_apart(real_digits):
    train, _ = real_digits(200, 10)
    assert fingerprint(train) == fingerprint(train.take(200))
    assert fingerprint(train) != fingerprint(train.take(199))


def test_trained_is_cached_and_reloaded_exactly(tmp_path, real_digits):
    train, _ = real_digits(300, 10)
    first = gp.trained(train=train, epochs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    again = gp.trained(train=train, epochs=1, cache_dir=tmp_path)
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    other_seed = gp.trained(train=train, epochs=1, seed=1, cache_dir=tmp_path)
    assert not torch.equal(other_seed.fc1.weight, first.fc1.weight)
    assert not first.training


def returned_state(net: torch.nn.Module) -> dict:
    """What a caller of ``gp.trained`` can tell apart, apart from the weights' values."""
    return {
        "modes": [module.training for module in net.modules()],
        "parameters": [
            (name, p.grad is None, p.requires_grad, p.dtype, p.device)
            for name, p in net.named_parameters()
        ],
        "buffers": [(name, b.dtype, b.device) for name, b in net.named_buffers()],
        "hooks": [
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in net.modules()
        ],
    }


def test_trained_returns_the_same_state_whether_it_trained_or_loaded(tmp_path, real_digits):
    # The first-run trap of notebook 01: a network trained just now kept its last step's
    # .grad, so the caller's next backward() added onto it; from the cache there was none.
    train, _ = real_digits(300, 10)
    just_trained = gp.trained(train=train, epochs=1, cache_dir=tmp_path)
    loaded = gp.trained(train=train, epochs=1, cache_dir=tmp_path)
    uncached = gp.trained(train=train, epochs=1, cache=False)
    assert len(list(tmp_path.glob("*.pt"))) == 1  # the second call did load
    for net in (just_trained, loaded, uncached):
        assert all(p.grad is None for p in net.parameters())
        assert not any(module.training for module in net.modules())
        assert {(p.dtype, p.device.type) for p in net.parameters()} == {(torch.float32, "cpu")}
    assert returned_state(just_trained) == returned_state(loaded) == returned_state(uncached)

    # The same weights give the same batch gradient on all three paths.
    images, labels = train.images[:64], train.labels[:64]
    gradients = []
    for net in (just_trained, loaded, uncached):
        torch.nn.functional.cross_entropy(net(images), labels).backward()
        gradients.append([p.grad for p in net.parameters()])
    for a, b, c in zip(*gradients):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_trained_rejects_unknown_models():
    with pytest.raises(ValueError, match="unknown model"):
        gp.trained("resnet")


def test_trained_weights_do_not_depend_on_the_callers_thread_count(tmp_path, real_digits):
    train, _ = real_digits(600, 10)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(gp.trained(train=train, epochs=1, cache=False))
        assert torch.get_num_threads() == threads  # restored after training
    for a, b in zip(results[0].state_dict().values(), results[1].state_dict().values()):
        assert torch.equal(a, b)


def test_resnet_mnist_trains_with_its_own_budget_and_reloads_its_batchnorm(tmp_path, real_digits):
    train, _ = real_digits(300, 10)
    first = gp.trained("resnet_mnist", train=train, cache_dir=tmp_path)
    (path,) = tmp_path.glob("resnet_mnist-seed0-*.pt")
    config = torch.load(path, weights_only=True)["config"]
    budget = {**REFERENCE_BUDGET, **MODEL_BUDGETS["resnet_mnist"]}
    assert {k: config[k] for k in budget} == budget
    assert config["epochs"] != REFERENCE_BUDGET["epochs"]  # the LeNets' budget is not used
    # Buffers (BatchNorm's running statistics) come back too, bit for bit.
    again = gp.trained("resnet_mnist", train=train, cache_dir=tmp_path)
    assert first.state_dict().keys() == again.state_dict().keys()
    for name, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    assert not torch.equal(first.bn1.running_var, torch.ones(16))  # training moved them
    assert not any(module.training for module in again.modules())
    # An explicit epoch count is another budget, so another file.
    gp.trained("resnet_mnist", train=train, epochs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("resnet_mnist-*.pt"))) == 2


WAITING_TRAINER = """
import sys, warnings
import gradprune_lite as gp
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    train = gp.mnist("train", limit=300, verbose=False, download=False)
print("calling trained", flush=True)
net = gp.trained(train=train, epochs=1, cache_dir=sys.argv[1])
print(float(net.fc1.weight.flatten()[0]), flush=True)
"""


def test_a_second_process_waits_for_the_first_trainer_and_loads_its_file(tmp_path, real_digits):
    pytest.importorskip("fcntl", reason="no flock on Windows: there both processes train")
    """Two processes that need the same uncached network (two kernels, two test workers)
    train it once: the second waits on the lock, then loads what the first wrote.

    Here this process holds the lock while a second one asks for the network, then writes
    a file of weights that training could never give (every value 0.5). Without the lock
    the second process finds no file, trains, and prints its own first weight.
    """
    import subprocess
    import sys
    import time

    from gradprune_lite.experiment.cached_file import one_writer

    train, _ = real_digits(300, 10)
    probe = tmp_path / "probe"
    gp.trained(train=train, epochs=1, cache_dir=probe)  # learns the file's name
    (name,) = [p.name for p in probe.glob("*.pt")]
    shared = tmp_path / "shared"
    path = shared / name
    with one_writer(path):
        second = subprocess.Popen(
            [sys.executable, "-c", WAITING_TRAINER, str(shared)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert second.stdout.readline().strip() == "calling trained"
        time.sleep(1)  # it reaches the lock meanwhile; later only makes the test weaker
        assert not path.exists() and second.poll() is None  # it is waiting, not training
        fake = gp.models.lenet_300_100()
        torch.save(
            {"state": {k: torch.full_like(v, 0.5) for k, v in fake.state_dict().items()}}, path
        )
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0
    assert float(out.strip()) == 0.5
    assert not list(shared.glob("*.partial"))


def test_the_training_lock_is_exclusive_and_released(tmp_path):
    fcntl = pytest.importorskip("fcntl", reason="no flock on Windows")

    from gradprune_lite.experiment.cached_file import one_writer

    path = tmp_path / "models" / "net.pt"
    with one_writer(path):
        with open(path.with_suffix(".lock"), "a") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(path.with_suffix(".lock"), "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again


def _cached_once(tmp_path, train):
    """A cache folder holding one trained network, and that network's file."""
    folder = tmp_path / "cache"
    net = gp.trained(train=train, epochs=1, cache_dir=folder)
    (path,) = folder.glob("*.pt")
    return net, path


def test_a_cache_that_cannot_be_locked_or_written_still_serves_its_files(tmp_path, real_digits):
    """A read-only cache (a Binder image, a shared folder): no lock file can be opened,
    yet the file there loads. (Tests run as root, where chmod does not stop writing, so a
    directory stands where the lock file would be opened: open() then fails the same way.)"""
    train, _ = real_digits(300, 10)
    net, path = _cached_once(tmp_path, train)
    path.with_suffix(".lock").unlink()
    path.with_suffix(".lock").mkdir()
    again = gp.trained(train=train, epochs=1, cache_dir=path.parent)
    assert all(
        torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values())
    )


def test_an_error_inside_the_unlocked_path_is_not_chained_to_the_lock_failure(tmp_path):
    from gradprune_lite.experiment.cached_file import one_writer

    path = tmp_path / "net.pt"
    path.with_suffix(".lock").mkdir()  # the lock file cannot be opened
    with pytest.raises(RuntimeError) as caught, one_writer(path):
        raise RuntimeError("training failed")
    assert caught.value.__context__ is None  # no "During handling of IsADirectoryError"


def test_a_file_system_that_refuses_locks_still_trains(tmp_path, real_digits, monkeypatch):
    """flock fails with ENOLCK on some NFS mounts: train without the lock, not fail."""
    fcntl = pytest.importorskip("fcntl", reason="no flock on Windows")

    def refuse(handle, operation):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    train, _ = real_digits(300, 10)
    gp.trained(train=train, epochs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1


def test_a_trained_network_that_cannot_be_cached_is_returned_with_a_warning(tmp_path, real_digits):
    """Training is not lost to an unwritable cache: the network comes back, a warning says
    why it was not cached, and no partial file is left. (As root, a directory where the
    partial file would be written makes torch.save fail as a read-only folder does.)"""
    import os

    train, _ = real_digits(300, 10)
    net, path = _cached_once(tmp_path, train)
    path.unlink()
    path.with_suffix(f".{os.getpid()}.partial").mkdir()
    with pytest.warns(UserWarning, match="could not be cached"):
        again = gp.trained(train=train, epochs=1, cache_dir=path.parent)
    assert all(
        torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values())
    )
    assert not path.exists()


@pytest.mark.parametrize("damage", [b"", b"not a torch file"])
def test_a_damaged_cached_file_is_a_value_error_that_says_to_delete_it(
    tmp_path, real_digits, damage
):
    train, _ = real_digits(300, 10)
    _, path = _cached_once(tmp_path, train)
    path.write_bytes(damage)
    with pytest.raises(ValueError, match="cannot be loaded.*Delete it"):
        gp.trained(train=train, epochs=1, cache_dir=path.parent)


def test_without_fcntl_a_new_cache_folder_is_made_and_filled(tmp_path, real_digits, monkeypatch):
    """Windows has no fcntl: there the lock is skipped, and with it the lock's mkdir, so a
    fresh machine's cache folder was never made and the trained network never cached."""
    import sys

    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` raises ImportError
    train, _ = real_digits(300, 10)
    folder = tmp_path / "new" / "models"
    gp.trained(train=train, epochs=1, cache_dir=folder)
    assert len(list(folder.glob("*.pt"))) == 1
    assert not list(folder.glob("*.lock"))
