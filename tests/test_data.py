import pytest
import torch

from nets.data import CLASS_NAMES, Shapes, cifar10, digits, make_shapes


def test_same_seed_gives_identical_tensors():
    a = make_shapes(300, image_size=24, seed=7, split="train")
    b = make_shapes(300, image_size=24, seed=7, split="train")
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_splits_and_seeds_are_different_draws():
    train, val = make_shapes(64, seed=0, split="train")[0], make_shapes(64, seed=0, split="val")[0]
    other = make_shapes(64, seed=1, split="train")[0]
    assert not torch.equal(train, val) and not torch.equal(train, other)


def test_prefix_property_across_chunks():
    """Drawing more images never changes the first ones (chunks are fixed)."""
    small = make_shapes(100, image_size=16, seed=3)
    large = make_shapes(5000, image_size=16, seed=3)
    for x, y in zip(small, large, strict=True):
        assert torch.equal(x, y[:100])


def test_shapes_types_ranges_and_masks():
    images, labels, masks = make_shapes(500, image_size=32, seed=0)
    assert images.shape == (500, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (500,) and labels.dtype == torch.int64
    assert masks.shape == (500, 32, 32) and masks.dtype == torch.int64
    assert images.min() >= 0 and images.max() <= 1
    assert set(labels.tolist()) == set(range(len(CLASS_NAMES)))
    # each mask holds background and exactly its image's class (label + 1)
    for label, mask in zip(labels, masks, strict=True):
        assert set(mask.unique().tolist()) <= {0, int(label) + 1}
    covered = (masks > 0).float().mean(dim=(1, 2))
    assert covered.min() > 0.01 and covered.max() < 0.6  # every object visible, none fills the image


def test_classes_are_balanced():
    labels = make_shapes(5000, image_size=16, seed=0)[1]
    counts = torch.bincount(labels, minlength=10)
    assert counts.min() > 400 and counts.max() < 600


def test_objects_differ_from_background():
    """The object's colour is pushed away from the background's mean colour."""
    images, _, masks = make_shapes(200, image_size=32, seed=0, noise=0.0, clutter=0)
    inside = masks.unsqueeze(1) > 0
    for img, m in zip(images, inside, strict=True):
        fg = img[:, m[0]].mean(dim=1)
        bg = img[:, ~m[0]].mean(dim=1)
        assert (fg - bg).abs().max() > 0.1


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=-1), "non-negative"),
    (dict(n=10, split="training"), "split must be one of"),
    (dict(n=10, image_size=4), "at least 8"),
    (dict(n=10, noise=2.0), "noise"),
    (dict(n=10, clutter=-1), "clutter"),
])
def test_bad_arguments_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_shapes(**kwargs)


def test_dataset_targets():
    ds = Shapes(20, image_size=16, split="val", seed=2, target="both")
    image, label, mask = ds[3]
    assert image.shape == (3, 16, 16) and label.dim() == 0 and mask.shape == (16, 16)
    assert len(ds) == 20
    seg = Shapes(20, image_size=16, split="val", seed=2, target="mask")
    assert torch.equal(seg[3][1], mask)
    with pytest.raises(ValueError, match="target must be"):
        Shapes(5, target="boxes")
    assert len(Shapes(0)) == 0


def test_digits_are_real_and_split_deterministically():
    from sklearn.datasets import load_digits

    train, test = digits("train"), digits("test")
    assert len(train) + len(test) == 1797 and len(test) == round(0.25 * 1797)
    x, y = train[0]
    assert x.shape == (1, 8, 8) and 0 <= x.min() and x.max() <= 1
    # the split is a permutation of the real images: together they are the whole set
    every = torch.cat([train.tensors[0], test.tensors[0]]).flatten(1) * 16
    real = torch.tensor(load_digits().data, dtype=torch.float32)
    assert torch.equal(every.sort(dim=0).values, real.sort(dim=0).values)
    assert torch.equal(digits("train").tensors[0], train.tensors[0])
    assert not torch.equal(digits("train", seed=1).tensors[0], train.tensors[0])
    assert digits("test", image_size=16)[0][0].shape == (1, 16, 16)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        digits("val")


def test_cifar10_offline_points_to_the_offline_sets(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.utils as tvu

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(tvu, "download_url", refuse)
    import torchvision.datasets.cifar as cifar_module
    monkeypatch.setattr(cifar_module, "download_and_extract_archive", refuse)
    with pytest.raises(RuntimeError, match=r"nets\.data\.Shapes.*nets\.data\.digits"):
        cifar10(root=str(tmp_path), download=True)
    with pytest.raises(RuntimeError, match="could not be downloaded"):
        cifar10(root=str(tmp_path), download=False)


def test_cifar10_loads_a_local_copy(tmp_path, monkeypatch):
    """A tiny stand-in in CIFAR-10's own on-disk format goes through the real loader."""
    import pickle

    import numpy as np
    import torchvision.datasets as tvd

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, _ in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                     "frog", "horse", "ship", "truck"]}, f)
    # the stand-in cannot have the md5 sums of the real files
    import torchvision.datasets.cifar as cifar_module
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar_module, "check_integrity", lambda *args, **kwargs: True)
    train = cifar10(root=str(tmp_path), train=True, download=False)
    assert len(train) == 20
    image, label = train[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 1
