"""The certified budget (budget.confidence, issue 55): the exact bound, its coverage, fixed-sequence
testing in the search's decision, one line when the data cannot certify, the shipped file on the
reported frontier, and the answers image by image that make every figure recomputable."""

import json
import math

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from compressor import certify
from compressor.search.decide import decide, pareto
from tests.test_search import REFERENCE, SEARCH, apart
from tests.test_search import row as search_row

S = OmegaConf.create({"objective": "latency_b1", "runtime": "any"})


def binom_cdf(k, n, p):
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def test_the_bound_matches_cases_computed_by_hand():
    # no discordant image among n: q_u = 1, so the bound is Clopper-Pearson's upper bound on 0 of n at
    # delta/2, 1 - (delta/2)^(1/n): 0.1474 points on 2,500 images at 95%
    assert certify.bound(0, 0, 2500, 0.95) == pytest.approx(100 * (1 - 0.025 ** (1 / 2500)), rel=1e-9)
    assert certify.bound(0, 0, 2500, 0.95) == pytest.approx(0.14744, abs=1e-4)
    # 3 images lost, none gained, of 100: q_u = 1 again; the bound p solves P(Binomial(100, p) <= 3) = 0.025
    p = certify.bound(3, 0, 100, 0.95) / 100
    assert binom_cdf(3, 100, p) == pytest.approx(0.025, abs=1e-9)
    # 45 lost, 55 gained, of 2,500 (a gain of 0.4 points): pi_u from 100 of 2,500, q_u from 45 of 100
    pi_u, q_u = certify.upper(100, 2500, 0.025), certify.upper(45, 100, 0.025)
    assert binom_cdf(100, 2500, pi_u) == pytest.approx(0.025, abs=1e-9)
    assert binom_cdf(45, 100, q_u) == pytest.approx(0.025, abs=1e-9)
    assert certify.bound(45, 55, 2500, 0.95) == pytest.approx(100 * pi_u * (2 * q_u - 1), rel=1e-12)
    assert 0.50 < certify.bound(45, 55, 2500, 0.95) < 0.52
    # more lost than gained can never be bounded below the observed drop
    assert certify.bound(60, 20, 2500, 0.95) > 100 * 40 / 2500


def test_a_file_truly_at_the_budget_is_certified_at_most_one_time_in_twenty():
    """Coverage: 4,000 certification sets of 1,000 images from a file whose true drop is exactly the
    budget (1 point: 3% of images lost, 2% gained). A valid 95% bound certifies it in at most 5%."""
    g = torch.Generator().manual_seed(0)
    n, draws = 1000, 4000
    u = torch.rand(draws, n, generator=g)
    worse, better = (u < 0.03).sum(1), ((u >= 0.03) & (u < 0.05)).sum(1)
    certified = sum(certify.bound(int(w), int(b), n, 0.95) <= 1.0 for w, b in zip(worse, better))
    assert certified / draws <= 0.05
    # and it is not vacuous: a file truly 1 point better is certified most of the time (65% here; the
    # bound is conservative, 0.6-0.9% false certifications against the 5% allowed: docs/budget.md)
    worse, better = (u < 0.02).sum(1), ((u >= 0.02) & (u < 0.05)).sum(1)
    assert sum(certify.bound(int(w), int(b), n, 0.95) <= 1.0 for w, b in zip(worse[:500], better[:500])) / 500 > 0.5


def test_answers_pack_to_bits_and_back():
    right = torch.rand(1001, generator=torch.Generator().manual_seed(1)) > 0.3
    assert torch.equal(certify.unpack(certify.pack(right), 1001), right)
    sel, held = certify.halves(1001)
    assert len(sel) == 501 and len(held) == 500 and not set(sel.tolist()) & set(held.tolist())
    assert torch.equal(certify.halves(1001)[0], sel)  # the same split every time


def row(name, val_drop, gain, size=1.0, stages=1):
    """test_search's frontier row, with its own size and stages (the frontier counts both)."""
    return {**search_row(val_drop, gain, name), "size_mb": size, "smaller": 1.0 / size, "stages": stages}


def held_out(results: dict):
    """A certification test that returns, for each recipe, the paired counts given (on n images)."""

    def test(r, confidence):
        worse, better, n = results[r["recipe"]]
        return {
            "images": n,
            "worse": worse,
            "better": better,
            "drop": 100 * (worse - better) / n,
            "bound": certify.bound(worse, better, n, confidence),
            "confidence": confidence,
        }

    return test


def test_a_file_within_the_budget_on_its_point_estimate_but_not_on_the_bound_is_not_shipped():
    """fast: 0.8 points on the selection half and 0.9 on the certification half, within a budget of 1
    on both point estimates, but 2,000 images bound its drop only at 1.8. safe is certified and ships."""
    rows = [row("safe", 0.1, 1.5), row("fast", 0.8, 3.0)]
    test = held_out({"safe": (5, 3, 2000), "fast": (24, 6, 2000)})
    out = decide(
        rows, "speedup_b1", 1.0, REFERENCE, S, timer=apart, tester=lambda rs, b: None, confidence=0.95, test=test
    )
    assert out["chosen"]["recipe"] == "safe"
    (failed,) = out["certification"]["failed"]
    assert out["certification"]["certified"] == 1 and failed["recipe"] == "fast"
    assert failed["drop"] == pytest.approx(0.9) and failed["bound"] > 1
    # two files: safe tested at half of the 5%, fast at the other half plus safe's (it passed)
    assert rows[0]["certify"]["confidence"] == pytest.approx(0.975) and rows[1]["certify"][
        "confidence"
    ] == pytest.approx(0.95)
    assert (
        "budget 1 pts certified at 95% confidence, 1 of 2 frontier files together: -0.10 pts on the certification "
        "split (2,000 images), a drop of at most 0.7" in out["verdict"]
    )
    point = decide(rows, "speedup_b1", 1.0, REFERENCE, S, timer=apart, tester=lambda rs, b: None)
    assert point["chosen"]["recipe"] == "fast"  # today's rule, the point estimate, would have shipped it


def test_a_file_that_fails_spends_only_its_own_share_of_the_confidence():
    """The fallback procedure: most accurate first, each file an equal share of the 5%, plus the level
    of the one before when it passed. b fails; c is still tested, at its own share only (not b's), and
    passes; the fastest certified file ships. Plain fixed-sequence testing would have stopped at b."""
    rows = [row("a", 0.0, 1.2), row("b", 0.3, 1.6), row("c", 0.6, 2.0)]
    test = held_out({"a": (10, 10, 2000), "b": (60, 20, 2000), "c": (4, 6, 2000)})
    out = decide(
        rows, "speedup_b1", 1.0, REFERENCE, S, timer=apart, tester=lambda rs, b: None, confidence=0.95, test=test
    )
    assert out["chosen"]["recipe"] == "c" and out["certification"]["certified"] == 2
    levels = [1 - r["certify"]["confidence"] for r in rows]
    assert levels == pytest.approx([0.05 / 3, 2 * 0.05 / 3, 0.05 / 3])  # a's share carried to b; b failed: c alone
    assert [r["certified"] for r in rows] == [True, False, True]


def test_the_fallback_sequence_holds_its_confidence_over_many_files():
    """Family-wise: 8 files whose true drop is exactly the budget (1 point), certified on 1,000 images
    each deal; the rate at which any of them is certified stays under 5%."""
    g = torch.Generator().manual_seed(2)
    n, draws, hits = 1000, 400, 0
    for _ in range(draws):
        u = torch.rand(8, n, generator=g)
        counts = [(int((x < 0.03).sum()), int(((x >= 0.03) & (x < 0.05)).sum())) for x in u]
        files = [{"i": i} for i in range(8)]
        passed, _ = certify.in_sequence(
            files, lambda f, conf: {"bound": certify.bound(*counts[f["i"]], n, conf)}, 1.0, 0.95
        )
        hits += bool(passed)
    assert hits / draws <= 0.05


def test_too_few_images_to_certify_anything_is_one_line_with_the_images_needed():
    rows = [row("a", 0.0, 1.2), row("b", 0.3, 1.6)]
    test = held_out({"a": (0, 0, 90), "b": (1, 0, 90)})
    out = decide(
        rows, "speedup_b1", 1.0, REFERENCE, S, timer=apart, tester=lambda rs, b: None, confidence=0.95, test=test
    )
    assert out["chosen"] is None and "\n" not in out["verdict"]
    assert out["verdict"].startswith(
        "search: nothing certified within budget.max_drop=1 at 95% confidence: none of the 2"
    )
    need = out["certification"]["first"]["images_needed"]
    assert (
        f"about {need:,} certification images would certify it" in out["verdict"]
        and "nothing shipped" in out["verdict"]
    )
    level = out["certification"]["first"]["confidence"]  # a's share: 97.5%
    assert level == pytest.approx(0.975)
    assert certify.bound(0, 0, need, level) <= 1.0 < certify.bound(0, 0, 90, level)  # and that many would
    assert 400 < need < 500  # 1 - 0.0125^(1/n) <= 1%: n >= 436


def test_the_shipped_file_is_on_the_frontier_the_report_gives():
    """Two copies of one file from two trials (a distilled student, and the same student behind a stage
    that changed nothing), timed 23.99x and 24.32x in their own trials, tie when timed side by side:
    the one with fewer stages ships, and it is on the frontier (not dominated: it has fewer stages)."""
    student = row("kd", 0.2, 23.99, size=0.2, stages=1)
    twin = row("kd + int8", 0.2, 24.32, size=0.2, stages=2)
    front = pareto([student, twin], "speedup_b1")
    tie = {0: [0.041, 0.043, 0.040, 0.044, 0.042], 1: [0.042, 0.041, 0.043, 0.042, 0.044]}
    out = decide(
        [student, twin],
        "speedup_b1",
        1.0,
        REFERENCE,
        S,
        timer=lambda c, b, t: tie,
        tester=lambda rs, b: None,
        confidence=0.95,
        test=held_out({"kd": (5, 5, 2000), "kd + int8": (5, 5, 2000)}),
    )
    assert out["chosen"]["recipe"] == "kd" and any(r is out["chosen"] for r in out["frontier"])
    assert {r["recipe"] for r in front} == {"kd", "kd + int8"}


# -- the latency table: decisions that do not move with the machine's load ------------------------------
def test_a_file_s_latency_key_is_what_it_computes_with_not_its_training_history(tmp_path):
    from compressor.models.cnn import SimpleCNN
    from compressor.search import latency
    from compressor.storage import artifact

    torch.manual_seed(0)
    net = SimpleCNN(num_classes=10, in_channels=1, image_size=8)
    spec = {"_target_": "compressor.models.cnn.SimpleCNN", "num_classes": 10, "in_channels": 1, "image_size": 8}
    a = artifact.save(net, tmp_path / "a.safetensors", spec, [{"stage": "train", "train/time_s": 1.0}])
    b = artifact.save(net, tmp_path / "b.safetensors", spec, [{"stage": "train", "train/time_s": 2.5}])
    assert a.read_bytes() != b.read_bytes() and latency.content(a) == latency.content(b)
    with torch.no_grad():
        net.classifier[-1].bias += 1
    c = artifact.save(net, tmp_path / "c.safetensors", spec, [{"stage": "train", "train/time_s": 1.0}])
    assert latency.content(c) != latency.content(a)


def test_a_figure_is_measured_once_under_the_protocol_then_read(tmp_path):
    from compressor.search import latency

    for name in ("base.onnx", "file.onnx"):
        (tmp_path / name).write_bytes(name.encode())
    base = {"runtime": "onnxruntime", "path": str(tmp_path / "base.onnx")}
    file = {"runtime": "onnxruntime", "path": str(tmp_path / "file.onnx"), "static_shape": False}
    calls = []
    g = torch.Generator().manual_seed(0)

    def noisy(files, batch, threads, count):  # the file 2x the baseline's speed, times +-30% round to round
        calls.append(count)
        return {
            0: [1.0 * (0.7 + 0.6 * torch.rand(1, generator=g).item()) for _ in range(count)],
            1: [0.5 * (0.7 + 0.6 * torch.rand(1, generator=g).item()) for _ in range(count)],
        }

    first = latency.figure(file, base, "speedup_b1", 1, tmp_path / "cache", timer=noisy)
    assert calls[0] == latency.MIN_ROUNDS and latency.MIN_ROUNDS <= len(first["rounds"]) <= latency.MAX_ROUNDS
    assert 1.2 < first["speedup"] < 3.3
    n = len(calls)
    again = latency.figure(file, base, "speedup_b1", 1, tmp_path / "cache", timer=noisy)
    assert again == first and len(calls) == n  # read from the table: not timed again
    other = latency.figure(file, base, "speedup_b64", 1, tmp_path / "cache", timer=noisy)
    assert len(calls) > n and other["batch"] == 64  # another batch size is another entry


def test_a_digits_search_ships_the_same_file_whatever_its_timer_returns(tmp_path, monkeypatch):
    """Two searches, fresh job indexes, one cache; the latency table's timer returns random values
    (another sequence each time). The second search reads every figure the first measured, times no
    file for its decisions, and ships the same file. (~20 s)"""
    import random

    import compressor
    from compressor.config import compose
    from compressor.search import latency

    calls = []

    def random_timer(files, batch, threads, count):
        calls.append([f["path"] for f in files])
        return {i: [random.uniform(0.01, 1.0) for _ in range(count)] for i in range(len(files))}

    monkeypatch.setattr(latency, "timed", random_timer)
    # test_search's digits search (90 images to certify on: a 5-point budget), two first-rung trials
    search = [*(a for a in SEARCH if not a.startswith("budget.max_drop=")), "budget.max_drop=5", "search.max_trials=2"]
    shipped = []
    for run in ("first", "second"):
        random.seed(run)  # another sequence of random timings each time
        cfg = compose(search, tmp_path / run, run)  # its own job index under tmp_path/<run>
        with open_dict(cfg):
            cfg.paths.cache_dir = str(tmp_path / "cache")  # one cache: the baseline and the latency table
        out = compressor.run(cfg)
        shipped.append(
            out["chosen"]
            and (
                out["chosen"]["recipe"],
                out["chosen"]["file"],
                out["chosen"]["runtime"],
                out["chosen"]["static_shape"],
                out["chosen"]["speedup_b1"],
            )
        )
        if run == "first":
            assert calls, "the first search measured its figures"
            calls.clear()
            # the test figure recomputes from the answers the search kept, image by image
            kept = json.loads((tmp_path / run / run / "correct.json").read_text())
            c = out["chosen"]
            bits = certify.unpack(
                kept["files"][c["path"] + " static" * c["static_shape"]]["test"], kept["images"]["test"]
            )
            assert bits.float().mean().item() == pytest.approx(c["test/acc"], abs=1e-6)
    assert shipped[0] and shipped[0] == shipped[1]
    assert not calls, "the second search timed no file for its decisions"


def test_without_a_confidence_the_search_decides_on_every_validation_image(tmp_path):
    """budget.confidence=null: a candidate's figures stay those of all the validation images."""
    from compressor.search.records import candidates

    right = torch.tensor([True] * 90 + [False] * 10)
    (tmp_path / "correct.json").write_text(
        json.dumps(
            certify.answers(
                {"val": right},
                {"model": {"val": right[torch.randperm(100, generator=torch.Generator().manual_seed(0))]}},
            )
        )
    )
    r = {
        **REFERENCE,
        "run": {"run_dir": str(tmp_path)},
        "compress/size_mb": 0.5,
        "val/acc": 0.9,
        "test/acc": 0.9,
        "latency/b1_ms": 0.5,
        "latency/b64_ms": 0.5,
        "stages": [{}],
    }
    (every,) = candidates(r, "any", halves=False)
    (half,) = candidates(r, "any")
    assert every["val/acc"] == 0.9 and "certifiable" not in every
    assert half["certifiable"] and half["val_images"] == 50


def test_an_openvino_file_s_key_ignores_the_names_it_numbers_per_process(tmp_path):
    from compressor.search import latency

    xml = (
        '<net name="Model{}" version="11">\n<layer id="1" name="Multiply_{}" type="Const" version="opset1"/>\n</net>\n'
    )
    for i, n in ((1, 429), (2, 369)):
        (tmp_path / f"m{i}.xml").write_text(xml.format(n, n * 1000))
        (tmp_path / f"m{i}.bin").write_bytes(b"weights")
    assert latency.content(tmp_path / "m1.xml") == latency.content(tmp_path / "m2.xml")
    (tmp_path / "m2.bin").write_bytes(b"other weights")
    assert latency.content(tmp_path / "m1.xml") != latency.content(tmp_path / "m2.xml")
    (tmp_path / "m3.xml").write_text(xml.format(429, 429000).replace('type="Const"', 'type="Convolution"'))
    (tmp_path / "m3.bin").write_bytes(b"weights")
    assert latency.content(tmp_path / "m3.xml") != latency.content(tmp_path / "m1.xml")
