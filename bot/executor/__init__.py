"""Executors run style-transfer jobs off the event loop; see base.py for the interface."""

from .base import Executor, ExecutorError, JobHandle, Refused, StyleJob


def make_executor(config) -> Executor:
    """The executor the config asks for."""
    if config.executor.kind == "celery":
        from ..config import queue_settings
        from .distributed import CeleryExecutor

        return CeleryExecutor(queue_settings(config))
    from .local import LocalExecutor

    return LocalExecutor(
        weights=config.engine.weights,
        devices=config.engine.devices,
        cpu_threads=config.engine.cpu_threads,
        job_timeout=config.caps.job_timeout,
        preview_interval=config.bot.preview_interval,
        precision=config.engine.precision,
        log_level=config.bot.log_level.upper(),
        log_json=config.bot.log_json,
    )


__all__ = ["Executor", "ExecutorError", "JobHandle", "Refused", "StyleJob", "make_executor"]
