"""One Lightning fit as the job uses it: the run's trainer and logger, validation accuracy per
epoch, (optionally) the best validation epoch's weights restored at the end, a last checkpoint
every epoch that a rerun resumes from (compressor/training/resume.py), and divergence as an error."""

import logging
import os
import shutil
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from compressor.data.base import example_input
from compressor.errors import Diverged, Interrupted, Stuck, slurm_gave_up
from compressor.training import ddp, resume
from compressor.training.flags import torch_flags_kept

log = logging.getLogger("compressor")


class History(L.Callback):
    """Validation accuracy at the end of every epoch (sanity checks excluded); kept in checkpoints."""

    def __init__(self):
        self.val_acc = []

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking and "val/acc" in trainer.callback_metrics:
            self.val_acc.append(float(trainer.callback_metrics["val/acc"]))

    def state_dict(self):
        return {"val_acc": list(self.val_acc)}

    def load_state_dict(self, state):
        self.val_acc = list(state["val_acc"])


class Finite(L.Callback):
    """Stops a fit whose loss (every batch) or weights (every epoch) are no longer finite."""

    def __init__(self, name: str, knob: str):
        self.name, self.knob = name, knob

    def _stop(self, trainer, what: str):
        raise Diverged(
            f"{self.name} diverged in epoch {trainer.current_epoch + 1}: {what}; lower {self.knob} "
            f"(or choose another optimizer/scheduler); nothing of this fit was kept"
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not torch.isfinite(loss.detach()).all():
            self._stop(trainer, f"the training loss is {loss.item()}")

    def on_train_epoch_end(self, trainer, pl_module):
        bad = next((n for n, p in pl_module.named_parameters() if not torch.isfinite(p.detach()).all()), None)
        if bad is not None:
            self._stop(trainer, f"weight {bad} holds NaN or inf")


class ChannelsLast(L.Callback):
    """Trains a conv net on the CPU in the channels-last layout (`train.channels_last`): oneDNN's
    convolutions run faster there than in the contiguous layout (docs/techniques.md gives the
    measurements). fit() puts the
    weights back in the contiguous layout when it ends, so what is saved, exported and quantized is
    laid out as before. A layout, like the thread count, changes float rounding, not what is
    trained: it is no part of a job's key. A net whose forward cannot take the layout (a
    `x.view(n, -1)` of a conv's output) trains contiguous: one probe on `example` says which."""

    def __init__(self, example: torch.Tensor):
        self.example = example

    def setup(self, trainer, pl_module, stage):  # after the technique's structure changes, before DDP and the optimizer
        if stage != "fit" or not isinstance(trainer.accelerator, CPUAccelerator):
            return
        pl_module.to(memory_format=torch.channels_last)
        nets = [
            pl_module,
            *([pl_module.teacher] if isinstance(getattr(pl_module, "teacher", None), torch.nn.Module) else []),
        ]
        training = pl_module.training
        try:
            with torch.no_grad():  # in eval mode: batch norm's running statistics stay as they are
                pl_module.eval()
                for net in nets:
                    net(self.example)
        except Exception as exc:  # any failure of the probe: the fit itself says what is wrong, if anything
            log.info(
                "%s trains in the contiguous layout: its forward fails in channels-last (%s)",
                type(pl_module.model if hasattr(pl_module, "model") else pl_module).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            )
            pl_module.to(memory_format=torch.contiguous_format)
        finally:
            pl_module.train(training)


class Plateau(EarlyStopping):
    """Stops a fit after `patience` epochs without a better validation accuracy (`train.patience`).
    Its count is kept in checkpoints; a fit resumed after the count ran out stops at once, as the
    uninterrupted fit did, instead of training one epoch more."""

    def __init__(self, patience: int):
        super().__init__(monitor="val/acc", mode="max", patience=patience, min_delta=0.0, check_finite=False)

    def on_train_start(self, trainer, pl_module):
        if self.wait_count >= self.patience:
            trainer.should_stop = True


def fit(
    cfg,
    module,
    dm,
    run_dir: Path,
    name: str,
    epochs: int,
    callbacks=(),
    checkpoint_dir=None,
    keep_best: bool = False,
    log_to=True,
    knob: str = "train.lr",
    trainer_args=None,
    patience=None,
) -> dict:
    """Fit `module` for `epochs`. With `checkpoint_dir`, a last checkpoint is saved there every
    epoch and a rerun resumes from it; `keep_best` also keeps the best validation epoch and
    restores it at the end; `patience` stops the fit once that many epochs in a row brought no better
    validation accuracy (`epochs` is then a maximum). `log_to=False` (budget probes) writes no logs. `knob` is what the
    divergence error tells the user to lower; `trainer_args` override the job's Trainer for this fit."""
    history = History()
    cbs = [
        history,
        Finite(name, knob),
        resume.RngState(),
        *callbacks,
        *([Plateau(patience)] if patience else []),
        *(
            [ChannelsLast(example_input(cfg.dataset.in_channels, cfg.dataset.image_size, 2))]
            if cfg.train.get("channels_last", True)
            else []
        ),
    ]
    best = None
    if checkpoint_dir is not None:  # `last` every epoch (resume); `best` only when it improves
        cbs.append(
            ModelCheckpoint(
                dirpath=str(checkpoint_dir), filename="last", monitor=None, save_top_k=1, enable_version_counter=False
            )
        )
    if checkpoint_dir is not None and keep_best:
        best = ModelCheckpoint(
            dirpath=str(checkpoint_dir),
            filename="best",
            monitor="val/acc",
            mode="max",
            save_top_k=1,
            enable_version_counter=False,
        )
        cbs.append(best)
    # any Lightning callback may come here; a technique's declares `resumable` (techniques/callback.py)
    if not all(getattr(cb, "resumable", True) for cb in callbacks):  # its structure changes between epochs
        if resume.point(checkpoint_dir) is not None:
            log.info("%s changes the model's structure during the fit, so it cannot resume: starting it over", name)
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
    start_from = resume.point(checkpoint_dir)
    if start_from is not None:
        done = resume.epochs_done(start_from)
        if done is None:
            start_from = None
        else:
            log.info(
                "resuming %s from %s: %d of %d epochs done, %d to go",
                name,
                start_from,
                min(done, epochs),
                epochs,
                max(0, epochs - done),
            )
    logger = instantiate(cfg.logger, save_dir=str(run_dir), version=name) if cfg.get("logger") and log_to else False
    extra = {} if log_to else {"enable_progress_bar": False, "enable_model_summary": False}
    module.train()  # cached models load in eval mode; the distiller keeps its teacher in eval
    with torch_flags_kept():  # `trainer.deterministic` holds for this fit only
        trainer = instantiate(
            cfg.trainer,
            max_epochs=epochs,
            callbacks=cbs,
            logger=logger,
            enable_checkpointing=checkpoint_dir is not None,
            plugins=[resume.AtomicCheckpointIO()],
            default_root_dir=str(checkpoint_dir or run_dir),
            **{**extra, **ddp.strategy(cfg), **(trainer_args or {})},
        )
        start = time.perf_counter()
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=str(start_from) if start_from else None, weights_only=True)
        except Diverged:
            if checkpoint_dir is not None:  # a rerun would only resume into the same divergence
                shutil.rmtree(checkpoint_dir, ignore_errors=True)
            raise
        except SystemExit as exc:  # Lightning turns Ctrl-C into sys.exit(1) after its own shutdown
            if not trainer.interrupted:
                raise
            if isinstance(exc, SIGTERMException):  # scancel, or a kill
                raise Interrupted(name, "SIGTERM", trainer.current_epoch, epochs) from None
            if os.environ.get("SUBMITIT_FOLDER") and not isinstance(exc.__context__, KeyboardInterrupt):
                # submitit requeued this SLURM job (a time limit or a preemption) and exits it: the next
                # attempt of the same job resumes from the last finished epoch
                log.warning(
                    "%s: requeued by SLURM after %d of %d epochs; the job resumes from epoch %d",
                    name,
                    trainer.current_epoch,
                    epochs,
                    trainer.current_epoch,
                )
                raise
            raise Interrupted(name, "SIGINT", trainer.current_epoch, epochs) from None
        except Exception as exc:
            if ddp.distributed(cfg) and ddp.gave_up_waiting(exc):  # a peer never came, or left
                what = (
                    "the other ranks "
                    + (
                        "to start the fit"
                        if trainer.current_epoch == 0 and not trainer.global_step
                        else "in a collective"
                    )
                    + f" ({' '.join(str(exc).split())[:160]})"
                )
                raise Stuck(
                    name,
                    trainer.global_rank,
                    trainer.world_size,
                    what,
                    ddp.timeout_s(cfg),
                    ddp.continue_command(),
                    trainer.current_epoch,
                    epochs,
                ) from None
            if slurm_gave_up(exc):  # SLURM's time limit with no requeue left (hydra.launcher.max_num_timeout)
                raise Interrupted(name, "SLURM's time limit, no requeue left", trainer.current_epoch, epochs) from None
            raise
        finally:
            module.to(memory_format=torch.contiguous_format)
        seconds = time.perf_counter() - start
    if best is not None and best.best_model_path:  # continue from the best validation epoch
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    if trainer.world_size > 1:  # DDP keeps the ranks' weights equal: each rank says what it ended with
        # (its parameters: buffers such as batch norm's and QAT observers' statistics last saw each
        # rank's own batch; rank 0's are the ones saved)
        log.info(
            "%s: rank %d of %d ends with weights %s",
            name,
            trainer.global_rank,
            trainer.world_size,
            ddp.digest(module, parameters_only=True),
        )
    # torch's thread count changes float reduction order, so the same seed trains to other weights
    # under another count (SimpleCNN on mnist5k, seed 0: test 0.973 at 1 thread, 0.976 at 2)
    return {
        "val/acc_per_epoch": history.val_acc,
        "val/acc_best": max(history.val_acc, default=None),
        "train/time_s": seconds,
        "train/threads": torch.get_num_threads(),
        "epochs": epochs,
        **({"epochs_trained": len(history.val_acc), "patience": patience} if patience else {}),
        **({"resumed_from_epoch": done} if start_from else {}),
    }


def optim_args(cfg, lr=None, schedule_epochs=None) -> dict:
    """The job's optimizer and schedule (train.*), at a stage's own learning rate and schedule length."""
    t = cfg.train
    return dict(
        optimizer=t.optimizer,
        lr=float(lr or t.lr),
        weight_decay=t.weight_decay,
        momentum=t.momentum,
        scheduler=t.scheduler,
        schedule_epochs=schedule_epochs,
    )
