"""The Ray Serve application: a thin FastAPI ingress in front of a sampler deployment.

Endpoints (every one but /healthz needs ``Authorization: Bearer <token>`` when a token is
configured, and a Host header among the configured names; see auth.py; bodies are JSON, sent as
``Content-Type: application/json``; FastAPI's /docs, /redoc and /openapi.json are off):

  POST /v1/generate        one video. JSON body (see requests.GenerateRequest): ``image`` (base64
                           PNG/JPEG, frame 0 of the video), ``frames`` (pixel frames of the output,
                           the image included), ``prompt``, ``seed``, ``cfg``, ``temperature``,
                           ``steps``. Answers the MP4 itself when the client accepts video/mp4,
                           else JSON with the base64 MP4 and its metadata.
  POST /v1/streams         a video sent as it is made (streams.py; WebSocket: stream_socket.py).
  POST /v1/batches         many inputs; one MP4 per input written under the storage root; 202 + id.
  GET  /v1/batches/{id}    status, progress, output URIs, per-input errors.
  GET  /v1/model           preset, trained frames and resolution, units, limits, batching stats.
  GET  /healthz            liveness.

The sampler deployment loads the export once per replica and groups concurrent requests with
``@serve.batch``; requests of the same shape (frames, steps, size) in a batch are sampled in one
KV-cached ``generate`` call, each with its own cfg, temperature and seed (see engine.Engine.run).
"""

# No `from __future__ import annotations` here: FastAPI must see the real `Request` class in the
# endpoint signatures of the Serve ingress to inject the request.
import asyncio
import base64
import uuid
from collections import Counter
from dataclasses import asdict, dataclass

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from ray import serve

from videomar.artifacts import storage
from videomar.platform.serving.auth import HostCheck, TokenCheck, exposure
from videomar.platform.serving.batches import (
    BatchStatus, BatchStore, GenerationFailed, new_batch_id, output_prefix, run_batch,
)
from videomar.platform.serving.bodies import parse_json, read_body, require_json
from videomar.platform.serving.engine import Engine, Job, answer, log
from videomar.platform.serving.requests import BatchRequest, GenerateRequest, RequestError, to_job, validate
from videomar.platform.serving.stream_socket import serve_socket
from videomar.platform.serving.streams import StreamRequest, StreamRunner, media_type, open_stream, to_stream
from videomar.platform.specs.serve import Limits, SamplerDefaults, ServeSpec
from videomar.ray_env import gpus_per_worker
from videomar.artifacts.export import check_complete

FRAMES_UNIT = "pixel frames of the output video; the condition image is frame 0 and counts"
IMAGE_SIZE_POLICY = (
    "rejected, never resized: the video has the image's size, whose width and height must be "
    "multiples of spatial_multiple and within the limits"
)
VIDEO_MP4 = "video/mp4"
REQUEST_ID_HEADER = "x-videomar-request-id"  # Serve sets x-request-id itself
INTERNAL_ERROR = "internal error; the server log has the details under this request_id"
RETRY_AFTER_S = 30  # a batch of the default size takes minutes; come back in a while

# The generated docs would answer without the token checks of the endpoints: off.
app = FastAPI(title="videomar", description="VideoMAR image-to-video generation",
              docs_url=None, redoc_url=None, openapi_url=None)


@app.middleware("http")
async def _request_id(request: Request, call_next):
    """Every answer carries a request id; an unexpected error is logged in full under it and the
    client gets only the id (no Ray error text: it names pids, hosts and paths)."""
    request.state.request_id = rid = uuid.uuid4().hex[:16]
    try:
        response = await call_next(request)
    except Exception:  # noqa: BLE001 -- the client gets a 500 with the id, the log the traceback
        log.exception("request %s: %s %s failed", rid, request.method, request.url.path)
        response = JSONResponse({"error": INTERNAL_ERROR, "request_id": rid}, status_code=500)
    response.headers[REQUEST_ID_HEADER] = rid
    return response


@app.exception_handler(RequestError)
async def _request_error(request: Request, err: RequestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else err.headers
    rid = request.state.request_id
    log.info("request %s: %d %s", rid, err.status, str(err)[:500])
    return JSONResponse({"error": str(err), "request_id": rid}, status_code=err.status, headers=headers)


@serve.deployment
class Sampler:
    """One replica: the export loaded once; batched generation; batch-size statistics."""

    def __init__(self, export: str, max_batch_size: int, batch_wait_timeout_s: float, limits: Limits):
        self.engine = Engine.load(export)
        self.streams = StreamRunner(self.engine, limits.max_streams, limits.stream_idle_timeout_s)
        self.batch_sizes: Counter = Counter()  # requests per @serve.batch call
        self.call_sizes: Counter = Counter()  # rows per sampler call
        self.generate_batch.set_max_batch_size(max_batch_size)
        self.generate_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)
        # Serve seals the next batch while the current one runs, so requests arriving during a
        # sampler call would form a small batch of their own; holding them until the sampler is
        # free lets them all join the next batch (they would wait for the sampler anyway).
        self.sampler_free = asyncio.Event()
        self.sampler_free.set()

    def info(self) -> dict:
        return {
            **asdict(self.engine.info()),
            "stats": {
                "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "sampler_call_sizes": {str(k): v for k, v in sorted(self.call_sizes.items())},
                "requests": sum(k * v for k, v in self.batch_sizes.items()),
                "streams": self.streams.stats(),
            },
        }

    @serve.batch  # sizes come from the spec, set in __init__
    async def generate_batch(self, jobs: list[Job]) -> list[dict]:
        self.sampler_free.clear()
        try:
            self.batch_sizes[len(jobs)] += 1
            self.call_sizes.update(Counter(job.shape for job in jobs).values())
            videos = await asyncio.to_thread(self.engine.run_each, jobs)  # [T, H, W, 3] uint8 or an error
            # Encoded inside the batch so its requests answer together and their clients' next
            # requests arrive together, to fill the next batch.
            return await asyncio.gather(*(asyncio.to_thread(answer, j, v) for j, v in zip(jobs, videos)))
        finally:
            self.sampler_free.set()

    async def generate(self, job: Job) -> dict:
        await self.sampler_free.wait()
        return await self.generate_batch(job)

    async def stream(self, job: Job, plan, media: str, control=None, bare: bool = False):
        async for item in self.streams.run(job, plan, media, control, bare):  # /v1/streams, frame by frame
            yield item


@dataclass(frozen=True)
class ApiSettings:
    """What the ingress needs from the spec (no secrets: the token travels as a digest)."""

    limits: Limits
    defaults: SamplerDefaults
    storage_root: str
    token: TokenCheck
    hosts: HostCheck
    max_batch_size: int
    batch_wait_timeout_s: float
    max_ongoing_requests: int


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class Api:
    def __init__(self, sampler, settings: ApiSettings):
        self.sampler = sampler
        self.s = settings
        self.store = BatchStore(settings.storage_root)
        self.tasks: set[asyncio.Task] = set()  # running batches, kept referenced until done
        # Batch inputs in flight, all batches together: at most half the sampler's request slots,
        # so /v1/generate requests always find room and never queue behind every batch.
        self.background = asyncio.Semaphore(max(1, settings.max_ongoing_requests // 2))
        self._spatial_multiple: int | None = None

    # -- helpers -----------------------------------------------------------------------------
    def _guard(self, request: Request) -> None:
        if not self.s.hosts.allows(request.headers.get("host")):
            raise RequestError("host: not a name this service answers to (http.allowed_hosts)", status=400)
        if not self.s.token.allows(request.headers.get("authorization")):
            raise RequestError("authorization: missing or wrong bearer token", status=401)

    async def _body(self, request: Request):
        require_json(request.headers.get("content-type"))
        body = await read_body(request.stream(), request.headers.get("content-length"), self.s.limits.max_body_bytes)
        return parse_json(body)

    async def _multiple(self) -> int:
        if self._spatial_multiple is None:
            self._spatial_multiple = (await self.sampler.info.remote())["spatial_multiple"]
        return self._spatial_multiple

    async def _job(self, req: GenerateRequest, request_id: str, field: str = "") -> Job:
        return to_job(req, self.s.limits, self.s.defaults, await self._multiple(), field, request_id)

    # -- endpoints ---------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model(self, request: Request) -> dict:
        self._guard(request)
        info = await self.sampler.info.remote()
        return {
            **info,
            "frames_unit": FRAMES_UNIT,
            "image_size_policy": IMAGE_SIZE_POLICY,
            "limits": self.s.limits.model_dump(),
            "defaults": self.s.defaults.model_dump(),
            "batching": {"max_batch_size": self.s.max_batch_size, "batch_wait_timeout_s": self.s.batch_wait_timeout_s},
        }

    @app.post("/v1/generate")
    async def generate(self, request: Request) -> Response:
        self._guard(request)
        req = validate(GenerateRequest, await self._body(request))
        job = await self._job(req, request.state.request_id)
        out = await self._generated(job)
        meta = {"frames": out["frames"], "height": out["height"], "width": out["width"], "fps": out["fps"],
                "seed": job.seed, "steps": job.steps, "cfg": job.cfg, "temperature": job.temperature}
        if VIDEO_MP4 in request.headers.get("accept", ""):
            headers = {f"x-videomar-{k}": str(v) for k, v in meta.items()}
            return Response(content=out["video"], media_type=VIDEO_MP4, headers=headers)
        return JSONResponse({**meta, "media_type": VIDEO_MP4, "video": base64.b64encode(out["video"]).decode()})

    @app.post("/v1/streams")
    async def streams(self, request: Request) -> Response:
        self._guard(request)
        req = validate(StreamRequest, await self._body(request))
        job, plan = to_stream(req, self.s.limits, self.s.defaults, await self._multiple(), request.state.request_id)
        return await open_stream(self.sampler, job, plan, media_type(request.headers.get("accept", "")))

    @app.websocket("/v1/streams")
    async def stream_socket(self, websocket: WebSocket) -> None:
        await serve_socket(websocket, self)

    @app.post("/v1/batches", status_code=202)
    async def create_batch(self, request: Request) -> JSONResponse:
        self._guard(request)
        if len(self.tasks) >= self.s.limits.max_running_batches:
            raise RequestError(f"batches: {len(self.tasks)} batches running, the limit; retry later", 429,
                               {"Retry-After": str(RETRY_AFTER_S)})
        req = validate(BatchRequest, await self._body(request))
        if len(req.inputs) > self.s.limits.max_batch_inputs:
            raise RequestError(
                f"inputs: {len(req.inputs)} inputs exceeds the limit of {self.s.limits.max_batch_inputs}")
        batch_id = new_batch_id()
        jobs = [await self._job(r, f"{batch_id}.{i}", f"inputs.{i}.") for i, r in enumerate(req.inputs)]
        status = BatchStatus(id=batch_id, output_prefix=output_prefix(self.s.storage_root, req.output_prefix, batch_id),
                             total=len(jobs))
        await asyncio.to_thread(self.store.save, status)
        task = asyncio.create_task(run_batch(self.store, status, jobs, self._video, self.background))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return JSONResponse({"id": batch_id, "status": status.status, "total": status.total,
                             "output_prefix": status.output_prefix}, status_code=202)

    @app.get("/v1/batches/{batch_id}")
    async def get_batch(self, batch_id: str, request: Request) -> JSONResponse:
        self._guard(request)
        found = await asyncio.to_thread(self.store.load, batch_id)
        if found is None:
            raise RequestError(f"id: no batch {batch_id}", status=404)
        return JSONResponse(found)

    async def _generated(self, job: Job) -> dict:
        out = await self.sampler.generate.remote(job)
        if "failed" in out:
            raise GenerationFailed(job.request_id)
        return out

    async def _video(self, job: Job) -> bytes:
        return (await self._generated(job))["video"]


# -- building and running ------------------------------------------------------------------------
def build_app(spec: ServeSpec, token: TokenCheck | None = None):
    """The Serve application for ``spec`` (Ray must be connected). ``token`` defaults to the one
    the spec's auth section configures. Refuses an incomplete export (ConfigError naming it) and
    a non-loopback spec.http.host without a token (AuthError)."""
    check_complete(storage.absolute(spec.export), "export")
    token = token or TokenCheck.from_config(spec.auth)
    exposure(spec.http, token)
    d, r = spec.deployment, spec.resources
    scaling = ({"autoscaling_config": d.autoscaling.model_dump()} if d.autoscaling
               else {"num_replicas": r.workers})
    sampler = Sampler.options(
        max_ongoing_requests=d.max_ongoing_requests,
        ray_actor_options={"num_cpus": r.cpus_per_worker, "num_gpus": gpus_per_worker(r.gpus_per_worker)},
        **scaling,
    ).bind(storage.absolute(spec.export), d.max_batch_size, d.batch_wait_timeout_s, spec.limits)
    settings = ApiSettings(
        limits=spec.limits, defaults=spec.defaults, storage_root=storage.absolute(spec.storage.root),
        token=token, hosts=HostCheck.from_config(spec.http), max_batch_size=d.max_batch_size,
        batch_wait_timeout_s=d.batch_wait_timeout_s, max_ongoing_requests=d.max_ongoing_requests,
    )
    return Api.options(max_ongoing_requests=max(100, 4 * d.max_ongoing_requests)).bind(sampler, settings)


def start(spec: ServeSpec, route_prefix: str = "/", token: TokenCheck | None = None) -> str:
    """Deploy the application (starting Serve's HTTP proxy on spec.http if needed); returns the
    base URL once replicas are ready."""
    serve.start(http_options={"host": spec.http.host, "port": spec.http.port})
    serve.run(build_app(spec, token), name=spec.app_name, route_prefix=route_prefix)
    return f"http://{spec.http.host}:{spec.http.port}{route_prefix.rstrip('/')}"
