"""The real loaders on small files in the real on-disk formats; splits; bad input."""

import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from compressor.data import Cifar10, Digits, FashionMnist, ImageFolderData, Mnist, Mnist5k
from compressor.errors import ConfigError

SPEC = dict(num_classes=10, batch_size=16)


def sizes(dm):
    dm.setup()
    return len(dm.train_set), len(dm.val_set), len(dm.test_set)


def test_mnist5k_is_real_and_split_by_seed():
    dm = Mnist5k(in_channels=1, image_size=28, mean=[0.1307], std=[0.3081], **SPEC)
    assert sizes(dm) == (3500, 500, 1000)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and y.dtype == torch.long
    again = Mnist5k(in_channels=1, image_size=28, mean=[0.1307], std=[0.3081], **SPEC)
    again.setup()
    assert dm.test_set.indices == again.test_set.indices
    other = Mnist5k(in_channels=1, image_size=28, mean=[0.1307], std=[0.3081], seed=1, **SPEC)
    other.setup()
    assert dm.test_set.indices != other.test_set.indices


def test_train_size_keeps_the_first_images_of_the_seeded_training_split():
    full = Mnist5k(in_channels=1, image_size=28, mean=[0.1307], std=[0.3081], **SPEC)
    part = Mnist5k(in_channels=1, image_size=28, mean=[0.1307], std=[0.3081], train_size=100, **SPEC)
    assert sizes(part) == (100, 500, 1000)  # validation and test stay whole
    full.setup()
    assert [part.train_set[i][1].item() for i in range(100)] == [full.train_set[i][1].item() for i in range(100)]
    assert part.fingerprint() != full.fingerprint()  # a baseline trained on the part is not the full one's
    with pytest.raises(ConfigError, match=r"dataset.train_size=4000: the training split has only 3500 images"):
        Mnist5k(in_channels=1, image_size=28, mean=[0.1307], std=[0.3081], train_size=4000, **SPEC).setup()


def test_digits_resizes():
    dm = Digits(in_channels=1, image_size=16, mean=[0.3], std=[0.4], **SPEC)
    assert sum(sizes(dm)) == 1797
    assert next(iter(dm.val_dataloader()))[0].shape[-1] == 16


def write_idx(root, n_train=40, n_test=20):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())


def test_mnist_reads_real_idx_files(tmp_path):
    write_idx(tmp_path)
    dm = Mnist(data_dir=tmp_path, download=False, in_channels=1, image_size=28, mean=[0.13], std=[0.31], **SPEC)
    dm.prepare_data()
    assert sizes(dm) == (36, 4, 20)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (16, 1, 28, 28) and y[:3].tolist() == [0, 1, 2]


def test_mnist_missing_files_is_one_line_naming_the_path(tmp_path):
    dm = Mnist(
        data_dir=tmp_path / "nowhere", download=False, in_channels=1, image_size=28, mean=[0.1], std=[0.3], **SPEC
    )
    with pytest.raises(ConfigError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert "\n" not in message and "nowhere" in message and "dataset.download=true" in message


def write_fashion_gz(folder, n_train=120, n_test=30):
    """The four files as Zalando and Debian ship them: idx, gzip-compressed, in one folder."""
    import gzip

    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 2049, n) + labels.tobytes())
    return folder


FASHION = dict(in_channels=1, image_size=28, mean=[0.286], std=[0.353], val_fraction=1 / 12, **SPEC)


def test_fashion_mnist_reads_real_idx_gz_files_through_torchvision(tmp_path):
    source = write_fashion_gz(tmp_path / "gz")
    dm = FashionMnist(
        data_dir=str(source),
        extract_dir=str(tmp_path / "x"),
        download=False,
        system_dir=str(tmp_path / "no_debian"),
        **FASHION,
    )
    dm.prepare_data()
    assert sizes(dm) == (110, 10, 30)  # validation: 1/12 of the training images, by the seed; the test set whole
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (16, 1, 28, 28) and y[:3].tolist() == [0, 1, 2]
    raw = next((tmp_path / "x").glob("fashion_mnist-*")) / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(FashionMnist.FILES)  # decompressed once, no temp left


def test_fashion_mnist_without_any_source_is_one_line_naming_all_three(tmp_path):
    dm = FashionMnist(
        data_dir=None,
        extract_dir=str(tmp_path / "x"),
        download=False,
        system_dir=str(tmp_path / "no_debian"),
        **FASHION,
    )
    with pytest.raises(ConfigError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert "\n" not in message and "dataset.data_dir" in message and "dataset-fashion-mnist" in message
    assert "network" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="dataset.data_dir=.*holds no Fashion-MNIST"):
        FashionMnist(data_dir=str(empty), extract_dir=str(tmp_path / "x"), **FASHION).prepare_data()


def write_cifar(root, n=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def test_cifar10_reads_real_pickle_batches(tmp_path, monkeypatch):
    write_cifar(tmp_path)
    # our files are in the real format but are not the published archive: skip only its md5 check
    monkeypatch.setattr(datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(datasets.cifar, "check_integrity", lambda *a, **k: True)
    dm = Cifar10(
        data_dir=tmp_path, download=False, in_channels=3, image_size=32, mean=[0.5] * 3, std=[0.25] * 3, **SPEC
    )
    dm.prepare_data()
    assert sizes(dm) == (90, 10, 20)
    assert next(iter(dm.train_dataloader()))[0].shape == (16, 3, 32, 32)


def write_folder(root, classes=("invoice", "letter"), n=6, corrupt=False):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((20, 30), 40 * i, np.uint8)).save(root / c / f"{i}.png")


def test_image_folder_without_splits(tmp_path):
    write_folder(tmp_path)
    dm = ImageFolderData(
        data_dir=tmp_path,
        in_channels=1,
        image_size=16,
        num_classes=2,
        mean=[0.5],
        std=[0.5],
        batch_size=4,
        val_fraction=0.25,
        test_fraction=0.25,
    )
    assert sizes(dm) == (6, 3, 3)
    assert next(iter(dm.train_dataloader()))[0].shape == (4, 1, 16, 16)


def test_rvl_cdip_layout_with_split_folders(tmp_path):
    for split in ("train", "val", "test"):
        write_folder(tmp_path / split, n=4)
    dm = ImageFolderData(
        data_dir=tmp_path, in_channels=1, image_size=32, num_classes=2, mean=[0.5], std=[0.5], batch_size=4
    )
    assert sizes(dm) == (8, 8, 8)


def test_image_folder_class_count_mismatch(tmp_path):
    write_folder(tmp_path)
    dm = ImageFolderData(data_dir=tmp_path, in_channels=1, image_size=16, num_classes=16, mean=[0.5], std=[0.5])
    with pytest.raises(ConfigError, match="dataset.num_classes=16"):
        dm.setup()


@pytest.mark.parametrize(
    "kw,key",
    [
        (dict(val_fraction=0), "val_fraction"),
        (dict(test_fraction=1.5), "test_fraction"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_values_name_the_key(kw, key):
    args = dict(in_channels=1, image_size=8, mean=[0.3], std=[0.4], num_classes=10, **kw)
    with pytest.raises(ConfigError, match=f"dataset.{key}"):
        Digits(**args)


def test_the_same_job_in_two_clones_has_one_key(tmp_path):
    """Issue 55: a job's key names its data by content, not by the folder they were unpacked to, so
    two checkouts (or cluster nodes with the project in other folders) find each other's results
    and stage fits; other data give another key."""
    from compressor import baseline, prefixes
    from compressor.data import user
    from compressor.data.fingerprint import of as fingerprint_data
    from tests.conftest import make_cfg

    def keys(clone, source):
        cfg = make_cfg(
            clone,
            [
                "dataset=fashion_mnist",
                f"dataset.data_dir={source}",
                f"dataset.extract_dir={clone / 'data'}",
                "technique=prune",
            ],
        )
        dm = user.build(cfg.dataset)
        data = fingerprint_data(dm, cfg.dataset)
        stages = [baseline.plain(cfg.technique)]
        return baseline.fingerprint(cfg, data), prefixes.key(cfg, data, stages, 0)

    one = keys(tmp_path / "clone1", write_fashion_gz(tmp_path / "clone1" / "gz"))
    two = keys(tmp_path / "clone2", write_fashion_gz(tmp_path / "clone2" / "gz"))
    assert one == two
    other = write_fashion_gz(tmp_path / "other" / "gz", n_train=132)
    assert keys(tmp_path / "other", other)[0] != one[0]


def test_a_job_without_data_folders_keeps_its_key(tmp_path):
    """Issue 55's content keys take out only where the files are: a digits job's key is the one it had
    before (its config holds no folder), so earlier job indexes are still found."""
    from compressor import baseline
    from compressor.data import user
    from compressor.data.fingerprint import of as fingerprint_data
    from tests.conftest import make_cfg

    cfg = make_cfg(tmp_path, ["technique=prune"])
    data = fingerprint_data(user.build(cfg.dataset), cfg.dataset)
    keyed = baseline.spec_of(cfg, data=data)
    assert keyed == baseline.spec_of(cfg)  # the whole dataset config, as before: nothing taken out
    assert "num_workers" in keyed["dataset"] and "confidence" not in keyed["budget"]  # at its default: unkeyed
