"""make bench --only throughput: our Lightning training loop against a plain PyTorch loop,
alternated in one process, threads pinned."""

import statistics
import tempfile
import time

import lightning as L
import torch
import torch.nn.functional as F

from compressor.config import compose
from compressor.measure import pinned_threads


def throughput(bench, epochs: int = 1, rounds: int = 3, threads: int = 1) -> dict:
    from hydra.utils import instantiate

    from compressor.modules import Classifier

    cfg = compose(["trainer.enable_progress_bar=false"], bench.out, "throughput")
    dm = instantiate(cfg.dataset)
    dm.setup()
    n = len(dm.train_set) * epochs

    def plain():
        L.seed_everything(0)
        model = instantiate(cfg.model.net)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        start = time.perf_counter()
        for _ in range(epochs):
            for x, y in dm.train_dataloader():
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        return n / (time.perf_counter() - start)

    def ours():
        L.seed_everything(0)
        module = Classifier(instantiate(cfg.model.net), dm.num_classes, scheduler="none")
        with tempfile.TemporaryDirectory() as tmp:
            logger = instantiate(cfg.logger, save_dir=tmp, version="bench")
            trainer = instantiate(
                cfg.trainer,
                max_epochs=epochs,
                logger=logger,
                limit_val_batches=0,
                enable_checkpointing=False,
                default_root_dir=tmp,
            )
            start = time.perf_counter()
            trainer.fit(module, train_dataloaders=dm.train_dataloader())
            return n / (time.perf_counter() - start)

    plain_rates, ours_rates = [], []
    with pinned_threads(threads):
        for _ in range(rounds):  # alternate, so machine load drifts hit both alike
            plain_rates.append(plain())
            ours_rates.append(ours())
    p, o = statistics.median(plain_rates), statistics.median(ours_rates)
    return {
        "plain images/s": p,
        "lightning images/s": o,
        "ratio": o / p,
        "threads": threads,
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "batch_size": cfg.dataset.batch_size,
    }
