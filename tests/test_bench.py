"""make bench's settings: Fashion-MNIST and 3 seeds unless narrowed (issue 25), the slow models on their
documented subset of the training images, and a bad --seeds refused in one line by argparse."""

import pytest

from experiments import bench, common, pruning


def settings(argv):
    """The settings make bench's options give (experiments.common.Bench)."""
    return bench.arguments(argv)[2]


def test_bench_measures_on_fashion_mnist_with_three_seeds_by_default():
    b = settings([])
    assert (b.dataset, b.seeds, b.train) == ("fashion_mnist", (0, 1, 2), "converged")
    assert b.data_args("simple_cnn") == ["dataset=fashion_mnist"]
    # ResNet-18 takes 33 min an epoch on 55,000 images at 1 thread: 5,000 of them, validation and test whole
    assert b.data_args("resnet18") == ["dataset=fashion_mnist", "dataset.train_size=5000"]


def test_bench_narrows_to_a_quick_look():
    b = settings(["--dataset", "mnist5k", "--seeds", "0"])
    assert (b.dataset, b.seeds) == ("mnist5k", (0,))
    assert b.data_args("resnet18") == ["dataset=mnist5k"]


def test_bench_refuses_seeds_that_are_not_integers(capsys):
    with pytest.raises(SystemExit) as exit:
        settings(["--seeds", "0,one"])
    assert exit.value.code == 2
    assert "--seeds: '0,one': seeds are comma-separated integers" in capsys.readouterr().err


def test_bench_names_a_run_folder_after_its_own_data_set_and_recipe():
    """experiments/kd.py and recipes.py pass their data set in the overrides: the folder says which. The
    4-epoch baselines' runs keep the folders they had; converged ones get their own beside them."""
    b = settings(["--train", "default"])
    assert b.folder(["dataset=digits", "technique=kd"], "kd_ce") == "digits_kd_ce"
    assert b.folder(["technique=quant"], "quant_full") == "fashion_mnist_quant_full"
    assert settings([]).folder(["technique=quant"], "quant_full") == "fashion_mnist_converged_quant_full"


def test_searches_over_another_space_get_their_own_folders_and_peer_reads_them(monkeypatch, tmp_path):
    """--search-args (the issue-57 headline space): every search takes them, and its folder, which the
    peer part reads, is named after them, so the default space's searches are not overwritten."""
    from experiments import peer, search

    space = ["search.students=[simple_cnn_half]", "search.channel=[0.5]"]
    b = settings(["--seeds", "0", "--search-args", *space])
    assert b.search_args == tuple(space) and settings([]).search_folder("latency_b1", 0) == "search_latency_b1_s0"
    named = b.search_folder("latency_b1", 0)
    assert named.startswith("search_latency_b1_s0_space") and named != settings(
        ["--search-args", space[0]]
    ).search_folder("latency_b1", 0)
    import compressor.search.records

    class Searched(Exception):
        pass

    def untimed(self, overrides, name, logger="none"):
        if "search=default" in overrides:
            raise Searched(overrides, name)
        return {}  # a single technique's results: read by the patched candidates below

    monkeypatch.setattr(type(b), "untimed", untimed)
    monkeypatch.setattr(
        compressor.search.records, "candidates", lambda r, runtime: [{"precision": "int8", "static_shape": True}]
    )
    with pytest.raises(Searched) as searched:
        search.searching(b)
    overrides, name = searched.value.args
    assert overrides[-2:] == space and name == named
    b.out = tmp_path
    assert str(tmp_path / b.folder([], named)) in peer.of_bench(b, objectives=("latency_b1",))  # not run yet: named

    composed = []
    monkeypatch.setattr(common, "compose", lambda overrides, out, name: composed.append(overrides))
    monkeypatch.setattr(common.compressor, "run", lambda cfg: {})
    b = settings([])
    b.job(["technique=prune"], "p")
    b.untimed(["technique=prune"], "p")
    assert all("train=converged" in o for o in composed)
    settings(["--train", "default"]).job(["technique=prune"], "p")
    assert "train=default" in composed[-1]


def test_bench_prunes_resnet18_with_its_recipe_and_names_it(monkeypatch):
    """ResNet-18's channel row fine-tunes 12 epochs on its subset (4 lost 5.4 points there): the row says
    so, and its runs get their own folders beside the default runs'."""
    calls = []
    monkeypatch.setattr(common.Bench, "job", lambda self, overrides, name: calls.append((overrides, name)) or {})
    monkeypatch.setattr(pruning, "fit_row", lambda name, data, runs: {"run": name, "seeds": len(runs)})
    b = settings(["--seeds", "0,1"])
    rows = pruning.pruning(b, ["resnet18"])
    assert rows == [{"run": "resnet18 channel 0.5 (epochs=12)", "seeds": 2}]
    assert [name for _, name in calls] == ["prune_channel_resnet18_epochs12", "prune_channel_resnet18_epochs12_s1"]
    assert all("technique.epochs=12" in o and "dataset.train_size=5000" in o for o, _ in calls)
    calls.clear()
    pruning.pruning(b, ["mnist_mlp"])  # no recipe: the shipped fine-tune, the folders as before
    assert [name for _, name in calls][::2] == ["prune_channel_mnist_mlp", "prune_l1_unstructured_mnist_mlp"]
    assert not any(o.startswith("technique.epochs") for overrides, _ in calls for o in overrides)


def test_peer_times_a_frontier_file_that_was_not_shipped(tmp_path):
    """--recipe R --runtime T: frontier.csv's int8 file of R on T, labelled not shipped; an unknown
    recipe is one line naming the file."""
    from experiments import peer

    head = "recipe,runtime,precision,static_shape,file,path\n"
    rows = [
        "prune channel 0.5 + int8,executorch,fp32,False,model.pte,/x/model.pte",
        "prune channel 0.5 + int8,executorch,int8,False,model.int8.pte,/x/model.int8.pte",
        "int8,executorch,int8,False,model.int8.pte,/y/model.int8.pte",
    ]
    (tmp_path / "frontier.csv").write_text(head + "\n".join(rows) + "\n")
    found = peer.frontier_file(tmp_path, "prune channel 0.5 + int8", "executorch")
    assert (found["path"], found["static_shape"]) == ("/x/model.int8.pte", False)
    assert found["recipe"].endswith("not shipped")
    with pytest.raises(SystemExit, match="no file of recipe 'kd' on executorch"):
        peer.frontier_file(tmp_path, "kd", "executorch")
