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

A window is written when it closes (to the store, and to whatever sinks the recorder publishes
to), with its start and end on the exporters' wall clock. A window left by an exception is
recorded ``failed`` with the error, or ``aborted`` on Ctrl-C. Opening the same window twice
(same action and epoch) while it is open is an error.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from mltelemetry.store import Store
from mltelemetry.workload.events import EventRecorder

F = TypeVar("F", bound=Callable[..., Any])

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


class Annotator:
    """Windows of one run (``scenario``, ``run``) of one campaign.

    ``target`` is an :class:`EventRecorder` (its campaign and publishers are used), an open
    :class:`Store`, or the path of a store file, which the annotator opens and closes.
    ``publishers`` (live sinks: Prometheus, InfluxDB, Grafana) default to those of an enclosing
    :func:`mltelemetry.workload.events.publishing` block.
    """

    def __init__(self, target: EventRecorder | Store | str | os.PathLike, campaign: str | None = None, *,
                 scenario: str = "train", run: int = 1, publishers: Sequence[Any] | None = None) -> None:
        self._owned: Store | None = None
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
        """A window named ``action``; yields its fields (a dict to fill). Also usable as a decorator."""
        return self.recorder.window(action, scenario=self.scenario, run=self.run, epoch=epoch, **fields)

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
        self._open: dict[Any, tuple[AbstractContextManager, dict[str, Any]]] = {}

    def open(self, key: Any, cm: AbstractContextManager[dict]) -> dict[str, Any]:
        fields = cm.__enter__()
        self._open[key] = (cm, fields)
        return fields

    def close(self, key: Any, exc: BaseException | None = None) -> None:
        entry = self._open.pop(key, None)
        if entry is not None:
            entry[0].__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    def close_all(self, exc: BaseException | None = None) -> None:
        for key in reversed(list(self._open)):
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
