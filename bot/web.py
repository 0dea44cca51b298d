"""Health and metrics over HTTP for operators: ``/healthz`` and ``/metrics`` (Prometheus text format).

Off unless ``[web] enabled = true``; bound to 127.0.0.1 unless told otherwise. ``/healthz`` answers
200 only while every gateway shard is connected and every worker is alive, else 503 with why; its
body lists each shard (connected or not, latency). ``/metrics`` has the gateway latency per shard.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from .app import StyleBot

log = logging.getLogger(__name__)

LAG_INTERVAL = 0.25  # seconds between event-loop lag samples
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The bot's metrics, in a registry of its own (several bots in one process stay apart)."""

    def __init__(self, bot: "StyleBot"):
        self.bot = bot
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter("nst_jobs", "Jobs finished, by outcome", ["outcome"], registry=self.registry)
        self.duration = Histogram(
            "nst_job_duration_seconds",
            "Wall time of completed jobs",
            buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1200, 3600),
            registry=self.registry,
        )
        self.speed = Histogram(
            "nst_job_steps_per_second",
            "Optimisation steps per second of completed jobs",
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200),
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "nst_event_loop_lag_seconds",
            "How late the event loop wakes up from a short sleep",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=self.registry,
        )
        self.registry.register(_ExecutorCollector(bot))
        self.registry.register(_GatewayCollector(bot))

    def job_finished(self, outcome: str, stats: dict | None = None) -> None:
        self.jobs.labels(outcome).inc()
        if stats:
            self.duration.observe(stats["seconds"])
            self.speed.observe(stats["steps_per_second"])

    async def sample_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            self.loop_lag.observe(max(0.0, loop.time() - started - LAG_INTERVAL))


class _ExecutorCollector:
    """Read at scrape time from the executor: queue depth, running jobs, worker restarts."""

    def __init__(self, bot: "StyleBot"):
        self.bot = bot

    def describe(self):
        return []

    def collect(self):
        executor = self.bot.executor
        jobs = executor.jobs() if executor is not None else []
        queued = GaugeMetricFamily("nst_queue_depth", "Jobs waiting for a worker")
        queued.add_metric([], sum(1 for j in jobs if j.state == "queued"))
        running = GaugeMetricFamily("nst_jobs_running", "Jobs running on a worker")
        running.add_metric([], sum(1 for j in jobs if j.state == "running"))
        restarts = CounterMetricFamily("nst_worker_restarts", "Workers replaced after dying")
        restarts.add_metric([], executor.restarts)
        return [queued, running, restarts]


class _GatewayCollector:
    """Read at scrape time from the bot's shards: connected or not, and latency, per shard."""

    def __init__(self, bot: "StyleBot"):
        self.bot = bot

    def describe(self):
        return []

    def collect(self):
        shards = self.bot.shard_states()
        connected = GaugeMetricFamily("nst_gateway_connected", "1 while every gateway shard is connected")
        connected.add_metric([], 1 if shards and all(s.connected for s in shards) else 0)
        shard_connected = GaugeMetricFamily("nst_gateway_shard_connected", "1 while the shard is connected", labels=["shard"])
        latency = GaugeMetricFamily("nst_gateway_latency_seconds", "Heartbeat to acknowledgement, per shard (NaN: unknown)",
                                    labels=["shard"])
        for shard in shards:
            shard_connected.add_metric([str(shard.shard_id)], 1 if shard.connected else 0)
            latency.add_metric([str(shard.shard_id)], math.nan if shard.latency is None else shard.latency)
        return [connected, shard_connected, latency]


class WebServer:
    def __init__(self, bot: "StyleBot", host: str, port: int):
        self.bot = bot
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the real port when 0 was asked for
        log.info("health and metrics on http://%s:%d/healthz and /metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def health(self) -> tuple[bool, str]:
        bot = self.bot
        if bot.is_closed() or bot.shutting_down:
            return False, "shutting down"
        shards = bot.shard_states()
        down = [str(s.shard_id) for s in shards if not s.connected]
        if not shards:
            return False, "not connected to the Discord gateway"
        if down:
            return False, f"shard {', '.join(down)} of {len(shards)} not connected to the Discord gateway"
        if bot.executor is None:
            return False, "workers not started"
        return bot.executor.health()

    async def healthz(self, request: web.Request) -> web.Response:
        healthy, reason = self.health()
        shards = [{"id": s.shard_id, "connected": s.connected, "latency": s.latency} for s in self.bot.shard_states()]
        return web.json_response(
            {"status": "ok" if healthy else "unhealthy", "reason": reason, "shards": shards, "time": time.time()},
            status=200 if healthy else 503,
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.bot.metrics.registry), headers={"Content-Type": CONTENT_TYPE})
