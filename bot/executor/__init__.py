"""Executors run style-transfer jobs off the event loop; see base.py for the interface. Which one runs,
and with what settings, is the config's to say (bot.config.make_executor)."""

from .base import Executor, ExecutorError, JobHandle, Refused, StyleJob


__all__ = ["Executor", "ExecutorError", "JobHandle", "Refused", "StyleJob"]
