"""`shelfops serve --backend ray`: the same FastAPI app, run as Ray Serve deployments.

* Two deployments. ``replica`` (autoscaled) holds the models: each replica builds the app
  itself, loads the models from the registry or the folders given, and follows the registry's
  aliases as the one-process server does (hot swap, canary, shadow). ``gateway`` is what Ray's
  HTTP proxy calls: it holds no model, passes every request through the doors (body limits,
  strict JSON, the rate limit: one bucket per client for the whole deployment rather than
  per replica) and relays it as plain data (``serve.relay.Call``) to a replica over a
  deployment handle. When a replica dies with requests in flight, the gateway sends the ones
  that may be sent twice (reads, search, recommend, classify, rerank) to a live replica and
  answers the others with a 503 in the shelfops envelope; behind Ray's proxy alone each of
  them was Ray's plain-text 500.
* Model calls are batched with ``@serve.batch``, sized by the optimize stage's tuning of the
  variant (its ``max_batch`` and ``max_wait_ms``): :class:`ServeBatcher`.
* Replicas autoscale on ongoing requests (``min_replicas`` .. ``max_replicas``).
* Each replica mirrors its Prometheus metrics into Ray's metrics (:func:`ray_mirror`): every
  node's metrics agent exports them (``ray_shelfops_*``, one series per replica worker), and
  ``sum without (WorkerId)`` is the deployment's total; ``/metrics`` through the gateway is
  the one replica that answered.
* What replicas must share lives outside them: sessions and the served-request log in Redis
  (``serve.state_url``), alias history and rollout state in the operational store
  (``registry.ops_url``, PostgreSQL).

Everything a replica needs travels as plain data (:class:`ReplicaSpec`), never as live
objects: each replica opens its own registry and Redis connections.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from shelfops import logs
from shelfops.config.load import load_config
from shelfops.config.schema import LimitsConfig
from shelfops.errors import ConfigError, Unavailable
from shelfops.serve import relay
from shelfops.serve.app import create_app
from shelfops.serve.deps import REQUEST_ID, request_id_from
from shelfops.serve.doors import Doors
from shelfops.serve.metrics import DEFINITIONS, Mirror
from shelfops.serve.spec import ReplicaSpec, serve_settings


class ServeBatcher:
    """The micro-batcher's interface (``shelfops.serve.batcher.MicroBatcher``) on ``@serve.batch``:
    concurrent ``submit`` calls are coalesced into one model call of at most ``max_batch``
    inputs, waiting at most ``max_wait_ms`` for the batch to fill. ``close`` drains."""

    def __init__(self, fn: Callable[[list[Any]], Sequence[Any]], *, max_batch: int = 32,
                 max_wait_ms: float = 2.0, name: str = "model",
                 on_batch: Callable[[int, float], None] | None = None, workers: int = 1) -> None:
        from ray import serve

        self.fn, self.name, self.on_batch = fn, name, on_batch
        self.max_batch, self.max_wait = max(1, int(max_batch)), max(0.0, max_wait_ms) / 1e3
        self.workers = max(1, int(workers))
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"batch-{name}")
        self._inflight = 0
        self._idle: asyncio.Event | None = None
        self._closed = False
        self.batches = 0
        self.items = 0

        @serve.batch(max_batch_size=self.max_batch, batch_wait_timeout_s=self.max_wait,
                     max_concurrent_batches=self.workers)
        async def run(items: list[Any]) -> list[Any]:
            t0 = time.perf_counter()
            outs = await asyncio.get_running_loop().run_in_executor(self._pool, self.fn, list(items))
            if len(outs) != len(items):
                raise RuntimeError(f"{self.name}: {len(outs)} outputs for {len(items)} inputs")
            self.batches += 1
            self.items += len(items)
            if self.on_batch:
                self.on_batch(len(items), time.perf_counter() - t0)
            return list(outs)

        self._run = run

    def start(self) -> ServeBatcher:
        self._idle = asyncio.Event()
        self._idle.set()
        return self

    async def submit(self, item: Any) -> Any:
        if self._closed:
            raise Unavailable(f"{self.name} is shutting down")
        self._inflight += 1
        if self._idle is not None:
            self._idle.clear()
        try:
            return await self._run(item)
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._idle is not None:
                self._idle.set()

    async def submit_many(self, items: Sequence[Any]) -> list[Any]:
        return list(await asyncio.gather(*(self.submit(it) for it in items)))

    async def close(self) -> None:
        """Stop accepting, wait for what is in flight, stop the worker."""
        if self._closed:
            return
        self._closed = True
        if self._idle is not None:
            await self._idle.wait()
        self._pool.shutdown(wait=True)


def ray_mirror() -> Mirror:
    """Record each of ``serve.metrics``' metrics into Ray's metrics too, under the same name
    and labels (called inside a replica: Ray's metric objects belong to its worker process)."""
    from ray.util import metrics as ray_metrics  # only where a replica runs on Ray

    record: dict[str, Callable[..., None]] = {}  # a counter's inc, a histogram's observe
    for name, d in DEFINITIONS.items():
        record[name] = (ray_metrics.Counter(name, description=d.help, tag_keys=d.labels).inc if d.kind == "counter"
                        else ray_metrics.Histogram(name, description=d.help, boundaries=list(d.buckets),
                                                   tag_keys=d.labels).observe)

    def mirror(name: str, labels: tuple[str, ...], value: float) -> None:
        record[name](value, tags=dict(zip(DEFINITIONS[name].labels, labels)))
    return mirror


class Replica:
    """A model replica: the whole app (models, sessions, the registry watcher), answering the
    gateway's relayed requests in process."""

    async def __init__(self, spec: ReplicaSpec) -> None:
        # the gateway applies the rate limit, once for the deployment; a replica seeing only
        # its share of a client's requests must not refuse them again with its own bucket
        limits = spec.serve_config.limits.model_copy(update={"rate_per_second": None})
        spec = replace(spec, serve={**spec.serve, "limits": limits.model_dump()})
        logs.from_env()  # no CLI started this process: SHELFOPS_LOG_LEVEL / _JSON say how it logs
        self.app = create_app(serve_settings(spec, batcher=ServeBatcher))
        self.app.state.shelfops.metrics.mirror = ray_mirror()
        self._life = self.app.router.lifespan_context(self.app)
        await self._life.__aenter__()  # the models are loaded before Ray routes anything here

    async def handle(self, call: relay.Call) -> relay.Reply:
        return await relay.answer(self.app, call)

    async def check_health(self) -> None:
        if not self.app.state.shelfops.ready:
            raise Unavailable("replica not ready")

    async def __del__(self) -> None:  # Ray Serve awaits it on a graceful stop
        await self._life.__aexit__(None, None, None)


class Gateway:
    """What Ray's HTTP proxy calls: the doors, then a replica through the deployment handle;
    a request lost with its replica is sent again (when it may be) or answered with a 503."""

    def __init__(self, replica: Any, limits: dict, retry_seconds: float = 10.0) -> None:
        logs.from_env()
        self.replica, self.retry_seconds = replica, retry_seconds
        self.front = Doors(self._forward, LimitsConfig(**limits))

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response  # the proxy hands us a starlette Request

        reply = await relay.collect(self.front, request.scope, request.receive)
        response = Response(reply.body, status_code=reply.status)
        response.raw_headers = reply.headers
        return response

    async def _forward(self, scope: dict, receive: Callable, send: Callable) -> None:
        chunks = []
        while True:  # the doors replay the body they checked; a GET has an empty one
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        client = scope.get("client")
        headers = [(bytes(k), bytes(v)) for k, v in scope.get("headers", [])]
        name = REQUEST_ID.encode()
        given = next((v.decode("latin-1") for k, v in headers if k.lower() == name), None)
        rid = request_id_from(given)
        if rid != given:  # named here, so that a request sent again keeps its id
            headers = [(k, v) for k, v in headers if k.lower() != name] + [(name, rid.encode())]
        call = relay.Call(scope["method"], scope["path"], scope.get("query_string", b""), tuple(headers),
                          b"".join(chunks),
                          (str(client[0]), int(client[1])) if client else None)
        reply = await self.relay(call)
        await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def relay(self, call: relay.Call) -> relay.Reply:
        from ray.exceptions import RayActorError  # ray is optional: only this backend needs it

        try:
            return await self.replica.handle.remote(call)
        except RayActorError:  # the replica died (or became unreachable) with the request on it
            if not relay.replayable(call):
                return relay.unavailable(f"the replica handling {call.method} {call.path} stopped before it "
                                         "answered; the request may have been stored: check before sending it again")
        try:
            reply = await asyncio.wait_for(self.replica.handle.remote(call), self.retry_seconds)
            reply.headers.append((b"x-shelfops-replayed", b"1"))  # said, so a client or a test can count them
            return reply
        except (RayActorError, TimeoutError):
            return relay.unavailable(f"no replica answered {call.method} {call.path} within "
                                     f"{self.retry_seconds:g} s of losing the first", retry_after_s=5)


def application(spec: ReplicaSpec, *, min_replicas: int = 1, max_replicas: int = 2,
                target_ongoing_requests: int = 16, num_cpus: float = 1.0, gateway_cpus: float = 0.1):
    """The Ray Serve application: the gateway in front of one autoscaled deployment of replicas."""
    from ray import serve  # ray is optional: only this backend needs it

    replica = serve.deployment(
        Replica, name="replica",
        autoscaling_config={"min_replicas": min_replicas, "max_replicas": max_replicas,
                            "target_ongoing_requests": target_ongoing_requests,
                            "upscale_delay_s": 5, "downscale_delay_s": 60},
        max_ongoing_requests=4 * target_ongoing_requests,
        ray_actor_options={"num_cpus": num_cpus})
    gateway = serve.deployment(Gateway, name="gateway", max_ongoing_requests=1000,
                               ray_actor_options={"num_cpus": gateway_cpus})
    return gateway.bind(replica.bind(spec), spec.serve_config.limits.model_dump())


def build(args: dict[str, Any]) -> Any:
    """The application as a Ray Serve config file builds it (KubeRay's RayService, ``serve
    deploy``): ``import_path: shelfops.serve.ray_backend:build`` with ``args``:

    * ``registry_prefix`` (required): serve ``<prefix>-<task>@production`` and follow its moves
    * ``config``: a shelfops YAML or a preset's name; ``overrides``: a list of ``key=value``
    * ``data``: the dataset folder holding the catalogue (default: the model's own)
    * ``min_replicas``, ``max_replicas``, ``replica_cpus``, ``watch_seconds``

    Secrets come from the environment, as for ``shelfops serve``: ``SHELFOPS_ADMIN_TOKEN``,
    ``SHELFOPS_OPS_URL``, ``SHELFOPS_STATE_URL``."""
    unknown = set(args) - {"registry_prefix", "config", "overrides", "data", "min_replicas", "max_replicas",
                           "replica_cpus", "watch_seconds"}
    if unknown or not args.get("registry_prefix"):
        raise ConfigError([f"ray_backend.build args: unknown {sorted(unknown)}" if unknown else
                           "ray_backend.build args: registry_prefix is required"])
    overrides = [str(x) for x in args.get("overrides", [])]
    cfg = (load_config(args["config"], overrides) if args.get("config")
           else load_config(data={}, overrides=overrides))
    spec = ReplicaSpec.from_config(cfg, registry_prefix=str(args["registry_prefix"]), data_dir=args.get("data"),
                                   admin_token=os.environ.get("SHELFOPS_ADMIN_TOKEN"),
                                   watch_seconds=float(args.get("watch_seconds", 5.0)))
    return application(spec, min_replicas=int(args.get("min_replicas", 1)),
                       max_replicas=int(args.get("max_replicas", 2)), num_cpus=float(args.get("replica_cpus", 1.0)))


def start(spec: ReplicaSpec, *, host: str = "127.0.0.1", port: int = 8000, num_cpus: int | None = None,
          min_replicas: int = 1, max_replicas: int = 2, replica_cpus: float = 1.0,
          log_to_driver: bool = True, metrics_port: int | None = None) -> str:
    """Start (or join) local Ray, run the application on ``host:port``; returns its URL once
    every replica answers. A local Ray started here exports its metrics (the replicas'
    ``ray_shelfops_*`` among them) on ``metrics_port`` (Ray picks one when None)."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver,
                 configure_logging=False, _metrics_export_port=metrics_port)
    serve.start(http_options={"host": host, "port": port})
    serve.run(application(spec, min_replicas=min_replicas, max_replicas=max_replicas, num_cpus=replica_cpus),
              name="shelfops", route_prefix="/", blocking=False)
    return f"http://{host}:{port}"


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
