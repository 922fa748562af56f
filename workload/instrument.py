"""The annotation API for your own training scripts: named, nestable windows written as events.

The campaign's ML scenarios use exactly this API, so your runs are analysed like theirs::

    from mltelemetry.workload.instrument import Annotator

    with Annotator("lab.db", campaign="resnet-sweep", scenario="resnet50", run=1) as ann:
        with ann.window("run"):
            with ann.window("prepare_data"):
                ...
            # PyTorch (or any loop): a context manager per epoch ...
            with ann.window("train"):
                for epoch in range(1, 11):
                    with ann.epoch(epoch) as fields:
                        ...
                        fields.update(loss=loss, accuracy=acc, val_loss=val_loss, val_accuracy=val_acc)

            # ... or a decorator: each call is one window; a returned dict of numbers becomes its fields
            @ann.recorded("epoch", numbered=True)
            def train_one_epoch():
                ...
                return {"loss": loss, "accuracy": acc}

            # Keras: a callback that records the train window and every epoch with Keras's logs
            model.fit(..., callbacks=[ann.keras_callback()])

With ``gpu_energy=True`` every window also measures the GPU energy it used, as Zeus does: NVML's
hardware energy counter of each GPU is read in this process at the window's edges, so even a
window far shorter than the GPU exporter's sampling interval gets its exact energy (to NVML's
millijoule). The window's fields then hold it, in the event and for you once the block ends::

    with Annotator("lab.db", campaign="sweep", gpu_energy=True) as ann:
        with ann.window("step") as step:
            ...
        print(step["gpu_energy_joules"], step["gpu0_energy_joules"])  # all GPUs, and each

A window is written when it closes (to the store, and to whatever sinks the recorder publishes
to), with its start and end on the exporters' wall clock. A window left by an exception is
recorded ``failed`` with the error, or ``aborted`` on Ctrl-C. Opening the same window twice
(same action and epoch) while it is open is an error.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from mltelemetry.errors import MltelemetryError
from mltelemetry.publisher import Publisher
from mltelemetry.store import Store
from mltelemetry.workload.events import EventRecorder, WindowStack

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)

# The window fields gpu_energy=True adds: joules over all measured GPUs, and per GPU (gpu0_energy_joules, ...).
FIELD_GPU_ENERGY = "gpu_energy_joules"

# The fields Keras's logs and our torch loop report at the end of every epoch.
EPOCH_FIELDS = ("loss", "accuracy", "val_loss", "val_accuracy")


def numeric_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """Keep what an event field can hold: numbers as float (NaN/inf dropped), strings and booleans as they are."""
    fields: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, bool | str):
            fields[key] = value
            continue
        try:
            number = float(value)  # numpy and framework scalars too
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            fields[key] = number
    return fields


class GpuEnergyMeter:
    """NVML's energy counter of each GPU (joules since the driver loaded), read in this process.

    ``nvml_module`` is pynvml (the default) or a stand-in with its function names (the tests' fake
    NVML); ``gpus`` the NVML indices to read (default: all). Raises MltelemetryError at once where NVML
    does not start or a GPU has no energy counter (it needs a Volta or newer GPU).
    """

    def __init__(self, nvml_module: Any = None, gpus: Sequence[int] | None = None) -> None:
        from mltelemetry.exporters.gpu.nvml import open_nvml

        self.nvml = open_nvml(nvml_module)
        try:
            indices = list(range(self.nvml.device_count())) if gpus is None else list(gpus)
            if not indices:
                raise MltelemetryError("gpu_energy: NVML sees no GPU")
            self.handles = {i: self.nvml.call(f"GPU {i}: getting its handle", "nvmlDeviceGetHandleByIndex", i)
                            for i in indices}
            self.read_j()
        except BaseException:
            self.nvml.close()
            raise

    def read_j(self) -> dict[int, float]:
        """Each GPU's counter now, in joules."""
        return {i: self.nvml.call(f"GPU {i}: reading its energy counter", "nvmlDeviceGetTotalEnergyConsumption",
                                  handle) / 1000 for i, handle in self.handles.items()}

    def close(self) -> None:
        self.nvml.close()


class Annotator:
    """Windows of one run (``scenario``, ``run``) of one campaign.

    ``target`` is an :class:`EventRecorder` (its campaign and publishers are used), an open
    :class:`Store`, or the path of a store file, which the annotator opens and closes.
    ``publishers`` (live ones: Prometheus, InfluxDB, Grafana; see :mod:`mltelemetry.publisher`) also hear of every
    window (those of an EventRecorder given are its own). With ``gpu_energy`` every window measures its
    GPU energy at its edges (see the module's docstring); ``gpus`` picks the NVML indices (default: all),
    ``nvml`` stands in for pynvml (tests).
    """

    def __init__(self, target: EventRecorder | Store | str | os.PathLike, campaign: str | None = None, *,
                 scenario: str = "train", run: int = 1, publishers: Sequence[Publisher] = (),
                 gpu_energy: bool = False, gpus: Sequence[int] | None = None, nvml: Any = None) -> None:
        self._owned: Store | None = None
        self.gpu_meter = GpuEnergyMeter(nvml, gpus) if gpu_energy else None
        if isinstance(target, EventRecorder):
            self.recorder = target
        else:
            if campaign is None:
                raise ValueError("a campaign name is needed unless an EventRecorder is given")
            store = target if isinstance(target, Store) else Store(Path(target))
            self._owned = None if isinstance(target, Store) else store
            self.recorder = EventRecorder(store, campaign, publishers=publishers)
        self.scenario = scenario
        self.run = run
        self._counters: dict[str, int] = {}

    @property
    def campaign(self) -> str:
        return self.recorder.campaign

    def window(self, action: str, *, epoch: int | None = None, **fields: Any) -> AbstractContextManager[dict]:
        """A window named ``action``; yields its fields (a dict to fill, which also holds the GPU energy once the
        block ends where the annotator measures it). Also usable as a decorator."""
        recorded = self.recorder.window(action, scenario=self.scenario, run=self.run, epoch=epoch, **fields)
        return recorded if self.gpu_meter is None else self._measured(recorded)

    @contextmanager
    def _measured(self, recorded: AbstractContextManager[dict]) -> Iterator[dict]:
        """The window with NVML's energy counters read at its edges, the increase added to its fields before it
        is written. A failing read (a GPU lost) leaves the figure out and the training going."""
        with recorded as fields:
            start = self._read_gpus()
            try:
                yield fields
            finally:
                end = self._read_gpus() if start is not None else None
                if start is not None and end is not None:
                    used = {i: end[i] - start[i] for i in start}
                    if min(used.values()) >= 0:  # a counter that went back: the driver reloaded, no figure
                        fields[FIELD_GPU_ENERGY] = sum(used.values())
                        fields.update({f"gpu{i}_energy_joules": joules for i, joules in used.items()})
                    else:
                        log.warning("a GPU energy counter went back inside the window: its GPU energy is unknown")

    def _read_gpus(self) -> dict[int, float] | None:
        try:
            return self.gpu_meter.read_j()  # type: ignore[union-attr]
        except MltelemetryError as e:
            log.warning("GPU energy not measured for this window: %s", e)
            return None

    def epoch(self, number: int, **fields: Any) -> AbstractContextManager[dict]:
        """The window of epoch ``number`` (counted from 1, as Keras reports them)."""
        return self.window("epoch", epoch=number, **fields)

    def recorded(self, action: str, *, numbered: bool = False, **fields: Any) -> Callable[[F], F]:
        """Decorator: every call of the function is one ``action`` window. A returned mapping's numeric
        values become the window's fields. With ``numbered`` the calls are numbered 1, 2, ... as the
        window's epoch (``@ann.recorded("epoch", numbered=True)``)."""

        def decorate(function: F) -> F:
            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                number = None
                if numbered:
                    number = self._counters[action] = self._counters.get(action, 0) + 1
                with self.window(action, epoch=number, **fields) as window_fields:
                    result = function(*args, **kwargs)
                    if isinstance(result, Mapping):
                        window_fields.update(numeric_fields(result))
                    return result
            return wrapper  # type: ignore[return-value]
        return decorate

    def keras_callback(self, *, train_window: bool = True, keras_module: Any = None,
                       on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> Any:
        """A Keras callback recording every epoch (with Keras's logs: loss, accuracy, val_loss, val_accuracy, ...)
        and, with ``train_window``, the whole ``fit`` as a ``train`` window around them.

        ``keras_module`` is the Keras whose ``fit`` will call it: ``keras`` (Keras 3, the default) or
        ``tf_keras`` (the default when ``TF_USE_LEGACY_KERAS=1``). ``on_epoch(epoch, fields)`` is called
        after each epoch's window is written. Use the callback as a context manager around ``fit`` to
        have a window left open by an exception recorded ``failed``.
        """
        from mltelemetry.workload.keras_backend import event_callback
        return event_callback(self, train_window=train_window, keras_module=keras_module, on_epoch=on_epoch)

    def close(self) -> None:
        if self.gpu_meter is not None:
            self.gpu_meter.close()
            self.gpu_meter = None
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> Annotator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OpenWindows:
    """Windows opened and closed by separate calls (framework callbacks), closed in reverse order.

    ``open(key, cm)`` enters a window's context manager; ``close(key, exc)`` leaves it, with the
    exception that ended it (the window is then recorded ``failed`` or ``aborted``).
    """

    def __init__(self) -> None:
        self._open: WindowStack[tuple[AbstractContextManager, dict[str, Any]]] = WindowStack()

    def open(self, key: Any, cm: AbstractContextManager[dict]) -> dict[str, Any]:
        fields = cm.__enter__()
        self._open.push(key, (cm, fields))
        return fields

    def fields(self, key: Any) -> dict[str, Any]:
        """The fields of the open window ``key`` (KeyError when it is not open)."""
        entry = self._open.get(key)
        if entry is None:
            raise KeyError(key)
        return entry[1]

    def close(self, key: Any, exc: BaseException | None = None) -> None:
        entry = self._open.pop(key)
        if entry is not None:
            entry[0].__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    def close_all(self, exc: BaseException | None = None) -> None:
        while (key := self._open.innermost()) is not None:
            self.close(key, exc)

    def __contains__(self, key: Any) -> bool:
        return key in self._open


@contextmanager
def closing_on_error(windows: OpenWindows) -> Iterator[None]:
    """Close every window still open when the block raises, with that exception."""
    try:
        yield
    except BaseException as e:
        windows.close_all(e)
        raise
