"""Training runs that advance step by step, and comparisons that train them in lock-step.

A :class:`Run` is one method (Alrao, SGD at a rate, or Adam with its defaults)
training one network on one data set with one seed. It advances one
mini-batch at a time (:meth:`Run.step`), so a :class:`Comparison` can train
several runs side by side and a caller (the dashboard, the command line) can
stop between two steps. Everything the views show is kept in the run's
:class:`~alrao_edu.training.records.RunRecord`.
"""

from __future__ import annotations

import copy
import math
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import AlraoModel, AlraoSGD, alraofy
from ..core.rates import validate_interval
from .devices import resolve_device
from .records import FeatureTracker, RunRecord

__all__ = ["METHODS", "MethodSpec", "Run", "Comparison", "ADAM_DEFAULT_LR"]

METHODS = ("alrao", "sgd", "adam")
ADAM_DEFAULT_LR = 1e-3  # torch.optim.Adam's default
EVAL_BATCH_SIZE = 512


@dataclass(frozen=True)
class MethodSpec:
    """The method of one run, with its learning rates.

    Args:
        method: ``"alrao"``, ``"sgd"`` or ``"adam"``.
        lr: the learning rate of ``sgd`` (required) or ``adam`` (default 1e-3);
            unused by ``alrao``.
        eta_min, eta_max, n_heads: Alrao's interval and number of heads.
    """

    method: str
    lr: float | None = None
    eta_min: float = 1e-5
    eta_max: float = 10.0
    n_heads: int = 10

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Invalid method: {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.method == "sgd" and self.lr is None:
            raise ValueError("Method 'sgd' needs a learning rate: MethodSpec('sgd', lr=0.1)")
        if self.lr is not None and (not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0):
            raise ValueError(f"Invalid lr: {self.lr!r}; expected a finite number > 0")
        if self.method == "alrao":
            validate_interval(self.eta_min, self.eta_max)
            if isinstance(self.n_heads, bool) or not isinstance(self.n_heads, int) or self.n_heads < 1:
                raise ValueError(f"Invalid n_heads: {self.n_heads!r}; expected an integer >= 1")

    @property
    def label(self) -> str:
        """A short name for legends and tables, e.g. ``Alrao [1e-05, 10]``, ``SGD 0.1``, ``Adam``."""
        if self.method == "alrao":
            return f"Alrao [{self.eta_min:g}, {self.eta_max:g}]"
        if self.method == "sgd":
            return f"SGD {self.lr:g}"
        return "Adam" if self.lr in (None, ADAM_DEFAULT_LR) else f"Adam {self.lr:g}"


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    # The last partial batch is dropped, as DataLoader(drop_last=True) does: on digits
    # (1,347 examples, batches of 32) it would hold 3 examples, whose BatchNorm statistics
    # and gradient step made the test accuracy measured right after it swing from 99 % to 25 %.
    order = torch.randperm(n, generator=generator)
    for index in range(_steps_per_epoch(n, batch_size)):
        yield order[index * batch_size : (index + 1) * batch_size]


def build_method(
    spec: MethodSpec,
    network: nn.Module,
    *,
    task: str = "classification",
    sigma2: float = 1.0,
    seed: int = 0,
    device: torch.device,
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Build the model and optimizer that ``spec`` trains, from a copy of ``network``.

    Alrao gets ``alraofy(network)`` with rates and heads drawn from ``seed``
    and :class:`~alrao_edu.AlraoSGD`; SGD and Adam train the network itself
    with ``torch.optim.SGD`` or ``torch.optim.Adam``.
    """
    network = copy.deepcopy(network)
    if spec.method == "alrao":
        model = alraofy(
            network,
            n_heads=spec.n_heads,
            eta_min=spec.eta_min,
            eta_max=spec.eta_max,
            task=task,
            sigma2=sigma2,
            generator=torch.Generator().manual_seed(seed),
        ).to(device)
        return model, AlraoSGD(model)
    model = network.to(device)
    if spec.method == "sgd":
        return model, torch.optim.SGD(model.parameters(), lr=spec.lr)
    return model, torch.optim.Adam(model.parameters(), lr=spec.lr or ADAM_DEFAULT_LR)


class SteppedRun:
    """Base class of step-by-step runs: the record, the step count and when the run is done.

    Subclasses set ``spec``, ``seed``, ``epochs``, ``batch_size``, ``model``,
    ``steps_per_epoch`` and ``total_steps``, call :meth:`_start_record`, and
    implement ``step()`` and ``evaluate()``.
    """

    def _start_record(self, data_name: str) -> None:
        self.record = RunRecord.start(
            self.spec,
            seed=self.seed,
            dataset=data_name,
            steps_per_epoch=self.steps_per_epoch,
            epochs=self.epochs,
            batch_size=self.batch_size,
        )
        self.features = FeatureTracker(self.model) if isinstance(self.model, AlraoModel) else None
        if self.features is not None:
            self.record.feature_layers = self.features.layer_names
            self.record.feature_rates = self.features.rates()
            self.record.head_learning_rates = self.model.head_learning_rates.tolist()
            self.record.switch_posterior.append(self.model.switch.posterior.tolist())

    @property
    def step_count(self) -> int:
        return len(self.record.train_loss)

    @property
    def diverged(self) -> bool:
        return self.record.diverged_at is not None

    @property
    def finished(self) -> bool:
        return self.diverged or self.step_count >= self.total_steps


class Run(SteppedRun):
    """One method training one network, one mini-batch per :meth:`step`.

    Args:
        spec: the method (:class:`MethodSpec`).
        network: the full network, ending in an ``nn.Linear`` classifier. The
            run trains a deep copy, so several runs can start from the same weights.
        dataset: a :class:`~alrao_edu.training.data.Dataset`.
        epochs: passes over the training set (>= 1).
        batch_size: mini-batch size (>= 1). Default 32, the batch size of Blier et al. (2019). Each
            epoch reshuffles and drops the last partial batch, unless the
            training set is smaller than one batch (then one batch of all of it).
        seed: seeds the mini-batch order and Alrao's rates and heads, so
            runs with the same seed see the same batches in the same order.
        device: ``"auto"`` (cuda, then mps, then cpu) or a device name.
        sigma2: variance of the Gaussian likelihood for regression data.
    """

    def __init__(
        self,
        spec: MethodSpec,
        network: nn.Module,
        dataset,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        seed: int = 0,
        device: str | torch.device = "auto",
        sigma2: float = 1.0,
    ) -> None:
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid {name}: {value!r}; expected an integer >= 1")
        if isinstance(sigma2, bool) or not isinstance(sigma2, (int, float)) or not (math.isfinite(sigma2) and sigma2 > 0):
            raise ValueError(f"Invalid sigma2: {sigma2!r}; expected a finite number > 0")
        self.spec = spec
        self.dataset = dataset
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.device = resolve_device(device)
        self.task = dataset.task
        self.sigma2 = float(sigma2)

        self.model, self.optimizer = build_method(
            spec, network, task=self.task, sigma2=self.sigma2, seed=seed, device=self.device
        )

        self._order_generator = torch.Generator().manual_seed(seed)
        self._train_x = dataset.train_x.to(self.device)
        self._train_y = dataset.train_y.to(self.device)
        self.steps_per_epoch = _steps_per_epoch(len(self._train_x), batch_size)
        self.total_steps = self.steps_per_epoch * epochs
        self.epoch = 0
        self._epoch_batches: Iterator[Tensor] | None = None

        self._start_record(dataset.name)

    # --------------------------------------------------------------- training

    def _loss(self, x: Tensor, y: Tensor) -> Tensor:
        if isinstance(self.model, AlraoModel):
            return self.model.training_loss(x, y)
        output = self.model(x)
        if self.task == "classification":
            return F.cross_entropy(output, y)
        return gaussian_nll(output, y, self.sigma2)

    def _next_batch(self) -> Tensor:
        if self._epoch_batches is None:
            self._epoch_batches = _batches(len(self._train_x), self.batch_size, self._order_generator)
        try:
            return next(self._epoch_batches)
        except StopIteration:
            self._epoch_batches = _batches(len(self._train_x), self.batch_size, self._order_generator)
            return next(self._epoch_batches)

    def step(self) -> bool:
        """Train on one mini-batch; evaluate at the end of each epoch.

        Returns ``True`` while the run has steps left, ``False`` once it has
        finished or diverged. A loss that is not finite marks the run diverged
        at this step; its weights are kept as they were before the step.
        """
        if self.finished:
            return False
        self.model.train()
        index = self._next_batch()
        x, y = self._train_x[index], self._train_y[index]

        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(x, y)
        value = float(loss.detach())
        if not math.isfinite(value):
            self.record.mark_diverged(self.step_count + 1)
            return False
        loss.backward()
        self.optimizer.step()
        self.record.train_loss.append(value)
        if isinstance(self.model, AlraoModel):
            self.model.update_switch()
            self.record.switch_posterior.append(self.model.switch.posterior.tolist())
            self.record.head_losses.append(self.model.last_head_losses.tolist())

        if self.step_count % self.steps_per_epoch == 0 or self.step_count == self.total_steps:
            self.evaluate()
        return not self.finished

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Compute the test metrics, append them to the record and return them.

        Classification: ``test_loss`` (mean negative log-likelihood) and
        ``test_accuracy``. Regression: ``test_mse``, the mean squared error of
        the prediction (Alrao's mixture mean), and ``test_loss``, the mean
        negative log-likelihood of the model's predictive distribution with
        variance ``sigma2``. For SGD and Adam that distribution is one
        Gaussian, so ``test_loss = K * (test_mse / (2 sigma2) + log(2 pi
        sigma2) / 2)`` for K target dimensions. For Alrao it is the switch
        mixture of the heads' Gaussians, as in classification.

        NOTE: after step t the switch keeps a weight of about
        ``1 / (t * n_heads)`` on every head whose last loss was finite. So a
        head that runs away with a too-large rate can pull Alrao's mixture
        mean, and its ``test_mse``, far off until its loss overflows and the
        switch drops it. The mixture's ``test_loss`` stays unaffected.
        """
        self.model.eval()
        x_all = self.dataset.test_x
        y_all = self.dataset.test_y
        total_loss, correct, squared_error = 0.0, 0, 0.0
        for start in range(0, len(x_all), EVAL_BATCH_SIZE):
            x = x_all[start : start + EVAL_BATCH_SIZE].to(self.device)
            y = y_all[start : start + EVAL_BATCH_SIZE].to(self.device)
            output = self.model(x)
            if self.task == "classification":
                log_probs = output if isinstance(self.model, AlraoModel) else F.log_softmax(output, dim=-1)
                total_loss += float(F.nll_loss(log_probs, y, reduction="sum"))
                correct += int((log_probs.argmax(-1) == y).sum())
            else:
                if isinstance(self.model, AlraoModel):
                    total_loss += float(_mixture_gaussian_nll(self.model, x, y).sum())
                else:
                    total_loss += float(gaussian_nll(output, y, self.sigma2, reduction="sum"))
                squared_error += float((output - y.view_as(output)).pow(2).sum())
        n = len(x_all)
        metrics = {"test_loss": total_loss / n}
        if self.task == "classification":
            metrics["test_accuracy"] = correct / n
        else:
            metrics["test_mse"] = squared_error / (n * self.dataset.test_y[0].numel())
        if not math.isfinite(metrics["test_loss"]) and not self.diverged:
            self.record.mark_diverged(self.step_count)
        self.record.add_evaluation(self.step_count, metrics)
        if self.features is not None:
            self.record.feature_movement.append(self.features.movement())
        return metrics


def _mixture_gaussian_nll(model: AlraoModel, x: Tensor, y: Tensor) -> Tensor:
    """Compute ``-log sum_j a_j N(y; mu_j(x), sigma2 I)`` per sample ``[B]`` for an Alrao regression model.

    Heads with a non-finite mean or a zero weight are left out, as in the model's mixture mean.
    """
    means = model.head_outputs(x)  # [B, H, K]
    log_weights = model.switch.log_posterior.to(device=means.device, dtype=means.dtype)  # [H]
    residual = means - y.reshape(len(y), 1, -1)
    log_density = -0.5 * (residual.pow(2) / model.sigma2 + math.log(2 * math.pi * model.sigma2)).sum(-1)  # [B, H]
    usable = torch.isfinite(log_density) & torch.isfinite(log_weights)
    return -torch.logsumexp(torch.where(usable, log_density + log_weights, -math.inf), dim=1)


def gaussian_nll(output: Tensor, target: Tensor, sigma2: float, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of ``target`` under N(output, sigma2) per dimension, summed over dimensions."""
    residual = output - target.view_as(output)
    per_sample = 0.5 * (residual.pow(2) / sigma2 + math.log(2 * math.pi * sigma2))
    per_sample = per_sample.reshape(len(output), -1).sum(-1)
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


class Comparison:
    """Several runs on the same data, trained in lock-step.

    Every run is built from the same network weights (``network_factory(seed)``
    is called once per seed) and sees the same mini-batches in the same order.

    Args:
        specs: the methods to compare.
        network_factory: ``seed -> nn.Module``, the full network for that seed.
        dataset: the data set.
        seeds: the seeds; one run per (method, seed).
        epochs, batch_size, device, sigma2: as in :class:`Run`.
    """

    def __init__(
        self,
        specs: Iterable[MethodSpec],
        network_factory: Callable[[int], nn.Module],
        dataset,
        *,
        seeds: Iterable[int] = (0,),
        epochs: int = 1,
        batch_size: int = 32,
        device: str | torch.device = "auto",
        sigma2: float = 1.0,
    ) -> None:
        self.dataset = dataset

        def make_run(spec: MethodSpec, network: nn.Module, seed: int) -> Run:
            return Run(spec, network, dataset, epochs=epochs, batch_size=batch_size, seed=seed, device=device, sigma2=sigma2)

        self._build_runs(specs, seeds, network_factory, make_run)

    def _build_runs(
        self,
        specs: Iterable[MethodSpec],
        seeds: Iterable[int],
        network_factory: Callable[[int], nn.Module],
        make_run: Callable[[MethodSpec, nn.Module, int], SteppedRun],
    ) -> None:
        """Build one run per (seed, method), every method of a seed from the same network."""
        self.specs = list(specs)
        self.seeds = list(seeds)
        if not self.specs:
            raise ValueError("A comparison needs at least one method")
        if not self.seeds:
            raise ValueError("A comparison needs at least one seed")
        self.runs = []
        for seed in self.seeds:
            torch.manual_seed(seed)
            network = network_factory(seed)
            for spec in self.specs:
                self.runs.append(make_run(spec, network, seed))
        self.stop_event = threading.Event()

    @property
    def finished(self) -> bool:
        return all(run.finished for run in self.runs)

    @property
    def total_steps(self) -> int:
        return max(run.total_steps for run in self.runs)

    @property
    def step_count(self) -> int:
        return max(run.step_count for run in self.runs)

    def step(self) -> bool:
        """Advance every unfinished run by one mini-batch. Returns ``False`` when all are done."""
        for run in self.runs:
            run.step()
        return not self.finished

    def stop(self) -> None:
        """Ask :meth:`train` to stop after the current step (safe to call from another thread)."""
        self.stop_event.set()

    def train(self, callback: Callable[["Comparison"], None] | None = None) -> bool:
        """Train until every run is done or :meth:`stop` is called.

        ``callback(self)`` runs after each lock-step. Returns ``True`` if all
        runs finished, ``False`` if stopped early.
        """
        self.stop_event.clear()
        while not self.finished:
            if self.stop_event.is_set():
                return False
            self.step()
            if callback is not None:
                callback(self)
        return True

    @property
    def records(self) -> list[RunRecord]:
        return [run.record for run in self.runs]
