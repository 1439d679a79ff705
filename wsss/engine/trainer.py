"""The one training loop behind train-cam, train-seg and any later trainer.

A trainer describes only what is its own in a `TrainTask` (the model, an objective module
returning loss terms, the dataset, an optional evaluation); `fit` does the rest the same way
for all of them: device and AMP, DDP under torchrun, the data loader, the lr schedule,
progress bar, JSONL metrics, per-epoch checkpoints, exact resume and the final weights.

Files in the output directory:
```
last.pt        resumable checkpoint, rewritten atomically after every epoch
final.pt       the last epoch's weights (what later stages read)
best.pt        only with periodic evaluation: the best-scoring epoch, labelled as such
metrics.jsonl  one line per epoch: every loss term averaged, lr, images/s, seconds, eval
summary.json   the run's outcome;  manifest.json  its parameters and software versions
```
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader, Dataset

from wsss.amp import AMP_DEFAULT
from wsss.data.datasets import FINGERPRINT_PARTS
from wsss.engine import distributed as dist
from wsss.engine.checkpoint import check_classes, load_checkpoint, save_checkpoint
from wsss.engine.device import (
    amp_policy,
    resolve_device,
    restore_rng_state,
    rng_state,
    runtime_differences,
    runtime_info,
)
from wsss.engine.optim import LrSchedule, build_optimizer
from wsss.engine.tensorboard import TensorBoardLog
from wsss.errors import WsssError, file_error
from wsss.io import (
    append_jsonl,
    atomic_write_bytes,
    environment_versions,
    jsonable,
    read_text_lines,
    write_json,
    write_manifest,
)
from wsss.models import CheckpointModel
from wsss.resume import claim_output_dir, moved_with_run, release_output_dir
from wsss.torchrun import per_process_batch
from wsss.ui import LineProgress, info, make_progress, warn

LAST, FINAL, BEST = "last.pt", "final.pt", "best.pt"
METRICS, SUMMARY = "metrics.jsonl", "summary.json"
# Options a resumed run may change without changing the result.
# Thread count and device change the bits only, and a resume under others warns.
RESUMABLE_CHANGES = frozenset({"out", "device", "amp", "loader_workers", "resume", "compile",
                               "eval_every", "eval_split", "threads", "tensorboard"})  # fmt: skip
# Path options: equal where they name the same place relative to the run folder, so that a run
# moved with its inputs resumes (`moved_with_run`); the training set's content is checked apart.
PATH_ARGS = frozenset({"data", "labels", "init", "pretrained", "class_list"})
# Options renamed since a checkpoint may have been saved: old key -> today's.
RENAMED_ARGS = {"use_pcl": "pcl", "workers": "loader_workers"}
# Options added since a checkpoint may have been saved -> the value it was made with.
ADDED_ARGS: dict[str, Any] = {"backbone_dilation": True, "align_corners": False, "head_norm": "bn",
                              "aff_head": "wsss", "pcl_maps": "raw", "accumulate": 1,
                              "sync_bn": False}  # fmt: skip
# Loss values reach the host (a wait for the GPU to finish every queued step) only this often
# and at an epoch's end, so that the host queues the next steps while the GPU runs.
READ_EVERY = 20


@dataclass
class EvalResult:
    """One periodic evaluation; `metric` is higher-is-better and picks `best.pt`."""

    name: str
    metric: float
    details: dict[str, Any] = field(default_factory=dict)
    # A few pictures of the evaluated images (H x W x 3 uint8) for TensorBoard, by name.
    images: dict[str, Any] = field(default_factory=dict)


Evaluate = Callable[[nn.Module, torch.device], "EvalResult | None"]


@dataclass
class TrainTask:
    """What differs between trainers.

    `objective` holds `model` and maps `(batch, progress)` to a dict of scalar loss terms
    with the optimised total under "loss" (progress = fraction of training done, for
    schedules such as the puzzle alpha). Putting the whole loss in one module lets DDP see
    one forward per step even when the model runs several times (image and tiles).
    `evaluate(model, device)` runs on every rank with the model in eval mode and returns a
    result on rank 0 (None elsewhere).
    """

    kind: str
    model: nn.Module
    objective: nn.Module
    dataset: Dataset
    param_groups: list[dict[str, Any]]
    model_config: dict[str, Any]
    classes: tuple[str, ...]
    evaluate: Evaluate | None = None

    @classmethod
    def of(
        cls,
        model: CheckpointModel,
        objective: nn.Module,
        dataset: Dataset,
        classes: tuple[str, ...],
        evaluate: Evaluate | None = None,
    ) -> TrainTask:
        """The task of a checkpoint model: its kind, parameter groups and config are its own."""
        return cls(
            kind=model.KIND,
            model=model,
            objective=objective,
            dataset=dataset,
            param_groups=model.param_groups(),
            model_config=model.config(),
            classes=classes,
            evaluate=evaluate,
        )


@dataclass(frozen=True)
class LoopConfig:
    """The engine's settings; `args` are the user's resolved options, kept in checkpoints."""

    # The user's options, defaults included, come from the stage's config (`TrainOptions`);
    # the engine declares no default of its own.
    out_dir: Path
    stage: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str
    schedule: str
    warmup_epochs: float
    seed: int
    device: str
    workers: int
    resume: bool
    compile: bool
    eval_every: int
    threads: int | None  # torch's CPU threads; None: torch's default
    amp: str = AMP_DEFAULT  # wsss.amp.AMP_CHOICES; the trainers pass their --amp
    momentum: float = 0.9
    nesterov: bool = True
    read_every: int = READ_EVERY
    accumulate: int = 1  # micro-batches per optimiser step; batch_size is the step's total
    sync_bn: bool = False
    tensorboard: Path | None = None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpochEnd:
    """Passed to `on_epoch_end` callbacks on every rank after an epoch's checkpoint."""

    epoch: int
    model: nn.Module
    metrics: dict[str, Any]


@dataclass
class FitResult:
    out_dir: Path
    final: Path
    last: Path
    best: Path | None
    epochs: int
    iterations: int
    seconds: float
    metrics: dict[str, Any]
    best_eval: dict[str, Any] | None

    def notes(self) -> list[str]:
        return [f"summary written to {self.out_dir / 'summary.json'}"]

    def to_json(self) -> dict[str, Any]:
        return {
            "final": self.final,
            "last": self.last,
            "best": self.best,
            "epochs": self.epochs,
            "iterations": self.iterations,
            "seconds": round(self.seconds, 2),
            "final_metrics": self.metrics,
            "best_eval": self.best_eval,
        }

    def summary_rows(self) -> list[tuple[str, object]]:
        """Rows of the final summary table the CLI prints."""
        rows: list[tuple[str, object]] = [
            ("epochs", self.epochs),
            ("iterations", self.iterations),
            ("images/s (last epoch)", f"{self.metrics.get('images_per_s', 0.0):.1f}"),
            ("training time", f"{self.seconds:.0f} s (this run)"),
        ]
        for key, value in self.metrics.items():
            if key not in (
                "epoch",
                "iterations",
                "images",
                "images_per_s",
                "seconds",
                "eval",
                "lr",
            ):
                rows.append((f"final {key}", f"{value:.4f}" if isinstance(value, float) else value))
        if "eval" in self.metrics:
            last = self.metrics["eval"]
            rows.append((f"final {last['name']}", f"{last['metric']:.2f}"))
        if self.best_eval is not None:
            rows.append(
                (
                    f"best {self.best_eval['name']} (best.pt)",
                    f"{self.best_eval['metric']:.2f} at epoch {self.best_eval['epoch']}",
                )
            )
        rows.append(("final weights (last epoch)", self.final))
        return rows


def fit(
    task: TrainTask,
    config: LoopConfig,
    on_epoch_end: Callable[[EpochEnd], None] | None = None,
) -> FitResult:
    """Train `task` for `config.epochs` epochs (resuming from `last.pt` with `config.resume`)."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device, dist.env_info().local_rank, config.amp)
    dist.init_distributed(device)
    return _Trainer(task, config, device, on_epoch_end).run()


def check_same_args(path: Path, saved: dict[str, Any], args: dict[str, Any]) -> None:
    """A checkpoint continues (or stands for) a run only if it was made with the same options,
    apart from those that do not change the result (`RESUMABLE_CHANGES`)."""
    saved = {RENAMED_ARGS.get(key, key): value for key, value in saved.items()}
    saved = {**{k: v for k, v in ADDED_ARGS.items() if k in args}, **saved}
    changed = sorted(
        key
        for key in set(saved) | set(args)
        if key not in RESUMABLE_CHANGES
        and saved.get(key) != args.get(key)
        and not (
            key in PATH_ARGS
            and moved_with_run(saved.get(key), args.get(key), saved.get("out"), args.get("out"))
        )
    )
    if changed:
        key = changed[0]
        raise file_error(
            path,
            f"saved with {key}={saved.get(key)!r}, this run has {args.get(key)!r} "
            f"({len(changed)} option(s) differ: {', '.join(changed)}); resume with the "
            "same options or use another --out",
        )


def _fingerprint(dataset: Dataset) -> dict[str, str] | None:
    """The dataset's `fingerprint()` (the toolkit's datasets have one), else None."""
    fingerprint = getattr(dataset, "fingerprint", None)
    return fingerprint() if callable(fingerprint) else None


def check_same_data(path: Path, saved: Any, now: dict[str, str] | None) -> None:
    """A run resumed on a training set that changed under it (same size, other images or
    labels) would silently continue on other data: refused, naming what changed. A
    checkpoint of an earlier version (no fingerprint) resumes as before."""
    if not isinstance(saved, dict) or now is None:
        return
    changed = [key for key in now if key in saved and saved[key] != now[key]]
    if changed:
        what = ", ".join(FINGERPRINT_PARTS.get(key, key) for key in changed)
        raise file_error(
            path,
            f"the training set changed since this run was saved ({what} differ); resume "
            "only on the data it was trained on, or train afresh into another --out",
        )


class _Trainer:
    def __init__(
        self,
        task: TrainTask,
        config: LoopConfig,
        device: torch.device,
        on_epoch_end: Callable[[EpochEnd], None] | None,
    ) -> None:
        self.task, self.config, self.device = task, config, device
        self.on_epoch_end = on_epoch_end
        self.out = Path(config.out_dir)
        self.is_main = dist.is_main()
        self.world = dist.world_size()
        self.amp = amp_policy(device)
        self.args = jsonable(config.args)
        self.micro_batch = per_process_batch(config.batch_size, self.world, config.accumulate)
        if self.is_main:
            # Locked, and cleared of a checkpoint write cut short by a kill.
            claim_output_dir(self.out, config.stage)
        # The training set as hashes (ids, labels, image sizes): recorded in every checkpoint,
        # and a resume on a set that changed under the run is refused (`check_same_data`).
        self.data_fingerprint = _fingerprint(task.dataset) if self.is_main else None
        checkpoint = self._checkpoint_to_resume()

        self.fmt = self.amp.memory_format
        task.objective.to(device=device, memory_format=self.fmt)
        self.amp.keep_outputs_fp32(task.model)
        if checkpoint is not None:
            with _resume_state(self.out / LAST):
                task.model.load_state_dict(checkpoint["model"])
        self.optimizer = loop_optimizer(task.param_groups, config)
        self._build_loader()
        self.schedule = LrSchedule(
            self.optimizer,
            total_steps=config.epochs * self.iterations,
            kind=config.schedule,
            warmup_steps=round(config.warmup_epochs * self.iterations),
        )
        self.scaler = self.amp.grad_scaler()
        self.start_epoch = 0
        self.best: dict[str, Any] | None = None
        if checkpoint is not None:
            with _resume_state(self.out / LAST):
                self.optimizer.load_state_dict(checkpoint["optimizer"])
                self.schedule.load_state_dict(checkpoint["schedule"])
                self.scaler.load_state_dict(checkpoint["scaler"])
                restore_rng_state(checkpoint["rng"])
                self.start_epoch = int(checkpoint["epoch"])
                self.best = checkpoint.get("best")
        self.board = None
        if config.tensorboard is not None and self.is_main:
            # The saved epoch's events sit at its last step: those after it are redone.
            resumed = self.schedule.step_count + 1 if checkpoint is not None else None
            self.board = TensorBoardLog(config.tensorboard, purge_step=resumed)
        if config.sync_bn:
            if self.world > 1:
                # In place: the parameters and buffers stay the objects the optimiser holds.
                dist.sync_batchnorm(task.objective, device)
            elif self.is_main:
                info("--sync-bn: one process, nothing to synchronise (BatchNorm as without it)")
        self.module = self.ddp = dist.wrap_ddp(task.objective, device)
        if config.compile:
            self.module = torch.compile(self.module)

    # -- setup -------------------------------------------------------------------------------
    def _checkpoint_to_resume(self) -> dict[str, Any] | None:
        """The checkpoint to continue from; stale files of a run never checkpointed go away."""
        last = self.out / LAST
        if not last.is_file():
            if self.is_main:
                for name in (METRICS, BEST):
                    (self.out / name).unlink(missing_ok=True)
            return None
        if not self.config.resume:
            raise file_error(
                self.out,
                f"holds a training run ({LAST}); pass --resume to continue it "
                "or choose another --out",
            )
        checkpoint = load_checkpoint(last, self.task.kind)
        check_classes(last, checkpoint, self.task.classes)
        check_same_args(last, checkpoint.get("args", {}), self.args)
        check_same_data(last, checkpoint.get("data_fingerprint"), self.data_fingerprint)
        changed = runtime_differences(checkpoint.get("runtime"), runtime_info(self.device))
        if changed and self.is_main:
            warn(
                f"{last} was written under other settings ({'; '.join(changed)}): the resumed "
                "run may differ bitwise from an uninterrupted one (see README, reproducibility)"
            )
        return checkpoint

    def _build_loader(self) -> None:
        cfg = self.config
        per_rank = self.micro_batch
        self.sampler = dist.make_sampler(self.task.dataset, cfg.seed)
        shard = len(self.sampler)
        if shard == 0:
            raise WsssError("the training split is empty")
        # Full steps only, unless the split is smaller than one step (tiny runs, tests).
        drop_last = shard >= per_rank * cfg.accumulate
        self.loader = DataLoader(
            dist.EpochDataset(self.task.dataset),
            batch_size=per_rank,
            sampler=self.sampler,
            num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=drop_last,
            persistent_workers=cfg.workers > 0,
            worker_init_fn=dist.seed_worker,
            # The loader's own generator keeps it off the global RNG, which resume restores.
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        # A split smaller than one step makes one step of all its micro-batches.
        self.accumulate = cfg.accumulate if drop_last else len(self.loader)
        self.iterations = len(self.loader) // self.accumulate  # optimiser steps per epoch
        # Micro-batches short of a whole step are dropped, as a short last batch is.
        self.micro_batches = self.iterations * self.accumulate
        self.step_images = per_rank * self.accumulate if drop_last else shard
        self.images_per_epoch = self.world * (self.micro_batches * per_rank if drop_last else shard)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> FitResult:
        cfg = self.config
        if self.is_main:
            write_manifest(self.out, cfg.stage, self.args, status="running", kind=self.task.kind,
                           effective_batch=self.effective_batch())  # fmt: skip
            self._trim_metrics()
            if self.start_epoch:
                info(f"resuming {self.out / LAST} after epoch {self.start_epoch}/{cfg.epochs}")
        started = time.perf_counter()
        record: dict[str, Any] = {}
        with make_progress("img", every=self.images_per_epoch) as progress:
            bar = progress.add_task(
                cfg.stage,
                total=cfg.epochs * self.images_per_epoch,
                completed=self.start_epoch * self.images_per_epoch,
                status="",
            )

            def advance(n: int, status: str | None) -> None:
                # The loss text changes only when the values are read.
                fields = {} if status is None else {"status": status}
                progress.update(bar, advance=n, **fields)

            batches = (
                self._epoch_batches(self.start_epoch) if self.start_epoch < cfg.epochs else None
            )
            for epoch in range(self.start_epoch, cfg.epochs):
                assert batches is not None
                try:
                    record = self._train_epoch(epoch, batches, advance)
                except torch.OutOfMemoryError:
                    raise WsssError(self._out_of_memory()) from None
                # The loader processes start on the next epoch while this one is saved.
                batches = self._epoch_batches(epoch + 1) if epoch + 1 < cfg.epochs else None
                self._end_epoch(epoch, record, progress)
        if self.start_epoch == cfg.epochs:
            record = self._last_record()
        return self._finish(record, time.perf_counter() - started)

    def _epoch_batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """The epoch's batches; with loader processes their loading starts at this call."""
        self.sampler.set_epoch(epoch)
        return itertools.islice(self.loader, self.micro_batches)

    def effective_batch(self) -> dict[str, Any]:
        """How one optimiser step's images were computed (the manifest's record)."""
        return {
            "processes": self.world,
            "per_process": self.micro_batch,
            "accumulate": self.config.accumulate,
            "total": self.config.batch_size,
            "sync_bn": self.config.sync_bn and self.world > 1,
        }

    def _out_of_memory(self) -> str:
        cfg = self.config
        return (
            f"out of device memory at {self.micro_batch} image(s) per process and micro-batch: "
            f"keep --batch-size {cfg.batch_size} and raise --accumulate to "
            f"{2 * cfg.accumulate}, or spread it over more GPUs (torchrun; README, GPU recipe)"
        )

    def _no_sync(self, last: bool) -> Any:
        """Gradients are averaged over processes once per optimiser step, at its last
        micro-batch; the others only add to each process's own."""
        if last or not isinstance(self.ddp, nn.parallel.DistributedDataParallel):
            return nullcontext()
        return self.ddp.no_sync()

    def _train_epoch(
        self,
        epoch: int,
        batches: Iterator[dict[str, torch.Tensor]],
        advance: Callable[[int, str | None], None],
    ) -> dict[str, Any]:
        cfg = self.config
        self.module.train()
        sums = LossSums(self.device)
        images, lr = 0, self.schedule.lr
        start = time.perf_counter()
        # Each batch is counted one batch late, so that the epoch's last count comes with the
        # epoch's losses (a log gets its epoch line from that count).
        held = 0
        for micro, batch in enumerate(self._on_device(batches)):
            position = micro % self.accumulate
            first, last = position == 0, position == self.accumulate - 1
            n = len(next(iter(batch.values())))
            progress = self.schedule.step_count / self.schedule.total_steps
            with self._no_sync(last):
                with self.amp.autocast():
                    terms = self.module(batch, progress)
                sums.add(terms)
                if first:
                    self.optimizer.zero_grad(set_to_none=True)
                # Each micro-batch's mean loss weighted by its share of the step's images: the
                # summed gradients are those of the whole step's mean.
                loss = terms["loss"]
                if n != self.step_images:
                    loss = loss * (n / self.step_images)
                self.scaler.scale(loss).backward()
            if last:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                lr = self.schedule.lr
                self.schedule.step()
            images += n
            status = None
            if sums.steps % cfg.read_every == 0 and sums.steps < self.micro_batches:
                status = self._read(sums, epoch)[1]
            if held or status is not None:
                advance(held, status)
            held = n * self.world
        totals, status = self._read(sums, epoch) if sums.steps else ({}, None)
        advance(held, status)
        seconds = time.perf_counter() - start
        keys = sorted(totals)
        reduced = dist.all_reduce_sum([totals[k] for k in keys] + [sums.steps, images], self.device)
        count, images = reduced[-2], int(reduced[-1])
        record = {"epoch": epoch + 1, "iterations": self.iterations}
        record.update(
            {key: total / count for key, total in zip(keys, reduced[: len(keys)], strict=True)}
        )
        record.update(
            {
                "lr": lr,
                "images": images,
                "images_per_s": images / seconds,
                "seconds": round(seconds, 3),
            }
        )
        return record

    def _read(self, sums: LossSums, epoch: int) -> tuple[dict[str, float], str]:
        """The sums on the host and the progress line; stops a diverged run."""
        first = sums.read_steps + 1
        totals, window = sums.read()
        if not math.isfinite(totals["loss"]):
            unit = "iteration" if self.accumulate == 1 else "micro-batch"
            steps = f"{unit} {first}" if first == sums.steps else f"{unit}s {first}-{sums.steps}"
            last = self.out / LAST
            saved = (
                f"{last} holds the last good epoch"
                if last.is_file()
                else "no epoch finished, nothing was saved"
            )
            raise WsssError(
                f"training diverged: loss is {totals['loss']} at epoch {epoch + 1}, "
                f"{steps}/{self.micro_batches} (lower --lr or check the data; {saved})"
            )
        lr = self.optimizer.param_groups[0]["lr"]
        if self.board is not None:
            self.board.scalars("train", {**window, "lr": lr}, self.schedule.step_count)
        status = (
            f"epoch {epoch + 1}/{self.config.epochs}  "
            + "  ".join(
                f"{key} {value:.4f}" for key, value in window.items() if key in ("loss", "alpha")
            )
            + f"  lr {lr:.3g}"
        )
        return totals, status

    def _on_device(
        self, batches: Iterator[dict[str, torch.Tensor]]
    ) -> Iterator[dict[str, torch.Tensor]]:
        """The batches on the device. On a GPU the next batch's copy runs on a side stream
        while the current step computes."""
        if self.device.type != "cuda":
            for batch in batches:
                yield self._to_device(batch)
            return
        stream = torch.cuda.Stream(self.device)
        pending: tuple[dict[str, torch.Tensor], torch.cuda.Event] | None = None
        for batch in batches:
            with torch.cuda.stream(stream):
                moved = self._to_device(batch)
                copied = torch.cuda.Event()
                copied.record(stream)
            if pending is not None:
                yield _ready(*pending, self.device)
            pending = (moved, copied)
        if pending is not None:
            yield _ready(*pending, self.device)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        moved = {}
        for key, value in batch.items():
            value = value.to(self.device, non_blocking=True)
            if value.dim() == 4 and value.is_floating_point():
                value = value.contiguous(memory_format=self.fmt)
            moved[key] = value
        return moved

    def _end_epoch(
        self, epoch: int, record: dict[str, Any], progress: Progress | LineProgress
    ) -> None:
        cfg = self.config
        done = epoch + 1
        dist.sync_buffers(self.task.model)
        due = self.task.evaluate is not None and (done % cfg.eval_every == 0 or done == cfg.epochs)
        result = None
        if due:
            # rich allows one live display at a time: the evaluation may show its own bar.
            progress.stop()
            try:
                result = self._evaluate()
            finally:
                if done < cfg.epochs:
                    progress.start()
            if result is not None:
                record["eval"] = {"name": result.name, "metric": result.metric, **result.details}
                info(f"epoch {done}: {result.name} {result.metric:.2f}")
                if self.best is None or result.metric > self.best["metric"]:
                    self.best = {"epoch": done, "name": result.name, "metric": result.metric}
                    if self.is_main:
                        self._save(BEST, done, best=self.best)
        if self.board is not None:
            self._log_epoch(record, result)
        if self.is_main:
            # Metrics first: a kill in between leaves a line that resume trims, never a gap.
            append_jsonl(self.out / METRICS, record)
            self._save(LAST, done, resumable=True)
        dist.barrier()
        if self.on_epoch_end is not None:
            self.on_epoch_end(EpochEnd(epoch=done, model=self.task.model, metrics=record))

    def _log_epoch(self, record: dict[str, Any], result: EvalResult | None) -> None:
        assert self.board is not None
        step = self.schedule.step_count
        skip = ("epoch", "iterations", "images", "seconds", "eval")
        self.board.scalars("epoch", {k: v for k, v in record.items() if k not in skip}, step)
        if result is not None:
            self.board.scalars("eval", {result.name: result.metric, **result.details}, step)
            self.board.images("eval", result.images, step)
        self.board.flush()

    def _evaluate(self) -> EvalResult | None:
        assert self.task.evaluate is not None
        model = self.task.model
        model.eval()
        try:
            with torch.no_grad():
                return self.task.evaluate(model, self.device)
        finally:
            model.train()
            dist.barrier()

    # -- files -------------------------------------------------------------------------------
    def _save(self, name: str, epoch: int, resumable: bool = False, **extra: Any) -> Path:
        content: dict[str, Any] = {
            "model_config": self.task.model_config,
            "classes": list(self.task.classes),
            "model": self.task.model.state_dict(),
            "epoch": epoch,
            "args": self.args,
            **({"data_fingerprint": self.data_fingerprint} if self.data_fingerprint else {}),
            "runtime": runtime_info(self.device),
            # str(): torch.__version__ is a TorchVersion, which weights-only loading refuses.
            "versions": {key: str(value) for key, value in environment_versions().items()},
            **extra,
        }
        if resumable:
            content.update(
                optimizer=self.optimizer.state_dict(),
                schedule=self.schedule.state_dict(),
                schedule_step=self.schedule.step_count,
                scaler=self.scaler.state_dict(),
                rng=rng_state(),
                best=self.best,
            )
        return save_checkpoint(self.out / name, self.task.kind, **content)

    def _trim_metrics(self) -> None:
        """Keep the lines of epochs the checkpoint holds (a kill may have left one more)."""
        path = self.out / METRICS
        if not path.is_file():
            return
        kept = [line for line in read_text_lines(path) if _line_epoch(line) <= self.start_epoch]
        atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())

    def _last_record(self) -> dict[str, Any]:
        path = self.out / METRICS
        lines = read_text_lines(path) if path.is_file() else []
        return json.loads(lines[-1]) if lines else {}

    def _finish(self, record: dict[str, Any], seconds: float) -> FitResult:
        cfg = self.config
        final = self.out / FINAL
        best = self.out / BEST if self.best is not None else None
        result = FitResult(
            out_dir=self.out,
            final=final,
            last=self.out / LAST,
            best=best,
            epochs=cfg.epochs,
            iterations=cfg.epochs * self.iterations,
            seconds=seconds,
            metrics=record,
            best_eval=self.best,
        )
        if self.is_main:
            if self.start_epoch < cfg.epochs or not final.is_file():
                self._save(FINAL, cfg.epochs)
            write_json(self.out / SUMMARY, result.to_json())
            write_manifest(
                self.out,
                cfg.stage,
                self.args,
                status="complete",
                kind=self.task.kind,
                effective_batch=self.effective_batch(),
                result=result.to_json(),
            )
            release_output_dir(self.out)
        if self.board is not None:
            self.board.close()
        dist.barrier()
        return result


@contextmanager
def _resume_state(path: Path) -> Iterator[None]:
    """A `last.pt` whose training state does not fit this run (edited, or of another model)
    is one line naming it, not torch's multi-line mismatch report."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        text = str(exc).strip()
        reason = text.splitlines()[0][:200] if text else type(exc).__name__
        raise file_error(path, f"training state does not fit this run: {reason}") from None


def _ready(
    batch: dict[str, torch.Tensor], copied: torch.cuda.Event, device: torch.device
) -> dict[str, torch.Tensor]:
    """A batch copied on a side stream, made safe to use on the current stream."""
    current = torch.cuda.current_stream(device)
    current.wait_event(copied)
    for value in batch.values():
        value.record_stream(current)  # its memory is not reused before the step is done
    return batch


def to_host(values: torch.Tensor) -> list[float]:
    """The loop's one device-to-host read of loss values (it waits for the queued steps)."""
    return values.tolist()


class LossSums:
    """A training epoch's loss terms summed on the device, read on the host now and then.

    Summed in float64 in step order, which gives on the host the same sums (bit for bit) as
    adding each step's float32 value to a Python float. A non-finite step makes the sum
    non-finite, so reading the sum is the divergence check.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.keys: list[str] | None = None
        self.sums: torch.Tensor | None = None
        self.steps = 0
        self.read_steps = 0
        self.last: dict[str, float] = {}

    def add(self, terms: dict[str, Any]) -> None:
        if "loss" not in terms:
            raise KeyError("the training objective must return a 'loss' term")
        keys = list(terms)
        if self.keys is None:
            self.keys = keys
        elif keys != self.keys:
            raise KeyError(f"the training objective returned {keys}, before {self.keys}")
        values = torch.stack([self._scalar(terms[key]) for key in keys]).double()
        self.sums = values if self.sums is None else self.sums + values
        self.steps += 1

    def _scalar(self, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value.detach().float().reshape(()).to(self.device, non_blocking=True)
        # A fill, not a copy from the host: a blocking copy would wait for the device.
        return torch.full((), float(value), dtype=torch.float32, device=self.device)

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        """The sums so far, and the mean of each term over the steps since the last read."""
        assert self.keys is not None and self.sums is not None
        totals = dict(zip(self.keys, to_host(self.sums), strict=True))
        count = self.steps - self.read_steps
        window = {key: (value - self.last.get(key, 0.0)) / count for key, value in totals.items()}
        self.last, self.read_steps = totals, self.steps
        return totals, window


def _line_epoch(line: str) -> int:
    try:
        return int(json.loads(line)["epoch"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return 1 << 30  # a torn or foreign line: dropped


def loop_optimizer(param_groups: Any, config: LoopConfig) -> torch.optim.Optimizer:
    """The optimiser that a loop's settings ask for, over a task's parameter groups."""
    return build_optimizer(
        param_groups,
        config.optimizer,
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )
