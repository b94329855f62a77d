"""The optimizer-step benchmark behind ``python -m optbook.bench``: settings, timing, records.

Every optimizer steps the same parameters with the same gradients, one after
the other in one process, so their ratios are fair on any machine. What is
reported:

* the median step time, after warm-up steps: from CUDA events on a GPU, one
  optimizer after the other; on a CPU from :func:`time.perf_counter_ns`, the
  optimizers taking turns step by step on their own copies of the parameters
  (:func:`optbook.bench.timing.interleaved_step_times`), so that load on a shared
  machine falls on all of them alike;
* the bytes a step must move (:mod:`optbook.kernels.roofline`: the exact
  fused Adafactor schedule for the Adafactor rows, one fused pass for AdamW),
  divided by the time: the *effective* bandwidth, and its fraction of the
  copy bandwidth measured on the same device in the same run;
* the optimizer-state bytes, counted from ``optimizer.state``
  (:func:`optbook.analysis.memory.optimizer_state_bytes`);
* on a GPU, the peak memory (``torch.cuda.max_memory_allocated``) of real
  forward/backward/step iterations of a small Transformer under AdamW and
  under Adafactor.

A CPU run measures the CPU rows (optbook's numba kernel, its
foreach and per-tensor paths, ``torch.optim.Adafactor``, AdamW foreach and
fused), on the small variants of the models unless ``--full`` (the 30.3M
``gpt2-30m`` set of :data:`optbook.bench.shapes.CPU_MODELS`, GPT-2 small), with a
three-stream bandwidth reference and each row's byte rate against fused
AdamW's; it labels itself as CPU: its absolute times say nothing about a GPU. Only a CUDA run makes a record for the book
(``--record`` writes it under ``book/data/`` with its provenance).
"""

from __future__ import annotations

import datetime as _dt
import gc
import importlib
import importlib.metadata
import json
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from optbook.bench.shapes import ALL_MODELS, MODELS, parameter_count, parameter_shapes
from optbook.kernels import roofline
from optbook.analysis.memory import optimizer_state_bytes

__all__ = [
    "SCHEMA",
    "METHODS",
    "Method",
    "BenchSettings",
    "applicable_methods",
    "make_parameters",
    "copy_bandwidth",
    "time_optimizer",
    "optimizer_state_bytes",
    "peak_training_memory",
    "provenance",
    "run_benchmark",
    "format_table",
    "evaluate_targets",
    "record_path",
    "load_records",
    "stream_bandwidth",
    "write_record",
    "paired_ratio",
    "PAIRED_BASELINES",
]

#: Version tag of the JSON layout; readers check it.
SCHEMA = "optbook.bench/1"
_ROOT = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    """One row of the benchmark: how to build the optimizer, and which byte model judges it."""

    key: str
    label: str
    build: Callable[[list[torch.Tensor]], torch.optim.Optimizer]
    family: str  # "adafactor" or "adamw": which floor the row is compared with
    cuda_only: bool = False
    fused: bool = False
    graph: bool = False  # time replays of a CUDA graph of one step


def _optbook(**kwargs):
    def build(params):
        from optbook import Adafactor

        return Adafactor(params, **kwargs)

    return build


def _torch_adafactor(**kwargs):
    return lambda params: torch.optim.Adafactor(params, **kwargs)


def _hf_adafactor(params):
    # transformers takes seconds to import: only when this row runs.
    from transformers.optimization import Adafactor

    # Its defaults are the paper's schedule (lr=None, relative_step=True).
    return Adafactor(params)


def _adamw(fused: bool, foreach: bool | None = None):
    return lambda params: torch.optim.AdamW(params, fused=True) if fused else torch.optim.AdamW(params, foreach=foreach)


METHODS: dict[str, Method] = {
    m.key: m
    for m in (
        Method("optbook-fused", "optbook.Adafactor(fused=True)", _optbook(fused=True), "adafactor",
               cuda_only=True, fused=True),
        Method("optbook-fused-graph", "optbook.Adafactor(fused=True), CUDA graph", _optbook(fused=True), "adafactor",
               cuda_only=True, fused=True, graph=True),
        Method("optbook-cpu-fused", "optbook.Adafactor(fused=True), numba CPU kernel", _optbook(fused=True),
               "adafactor", fused=True),
        Method("optbook-foreach", "optbook.Adafactor(fused=False, foreach=True)", _optbook(fused=False, foreach=True),
               "adafactor"),
        Method("optbook", "optbook.Adafactor (not fused)", _optbook(fused=False), "adafactor"),
        Method("torch-adafactor", "torch.optim.Adafactor (default: for-loop)", _torch_adafactor(), "adafactor"),
        Method("torch-adafactor-foreach", "torch.optim.Adafactor(foreach=True)", _torch_adafactor(foreach=True),
               "adafactor"),
        Method("hf-adafactor", "transformers Adafactor (defaults)", _hf_adafactor, "adafactor"),
        Method("adamw-fused", "torch.optim.AdamW(fused=True)", _adamw(True), "adamw", fused=True),
        Method("adamw-foreach", "torch.optim.AdamW(foreach=True)", _adamw(False, foreach=True), "adamw"),
        Method("adamw", "torch.optim.AdamW (default)", _adamw(False), "adamw"),
    )
}
_CUDA_DEFAULT = (
    "optbook-fused", "optbook-fused-graph", "optbook", "torch-adafactor", "torch-adafactor-foreach",
    "hf-adafactor", "adamw-fused",
)
# On a CPU: six rows (the fused kernel is numba's there; AdamW's fused step is torch's own).
_CPU_DEFAULT = ("optbook-cpu-fused", "optbook-foreach", "optbook", "torch-adafactor", "adamw-foreach", "adamw-fused")


def applicable_methods(device: torch.device, requested: Sequence[str] | None = None) -> list[Method]:
    """The rows to run on ``device``: every GPU row on CUDA; on a CPU the six CPU rows
    (the Triton rows need CUDA; the CPU's fused row is ``optbook-cpu-fused``)."""
    device = torch.device(device)
    if requested is None:
        requested = _CUDA_DEFAULT if device.type == "cuda" else _CPU_DEFAULT
    out = []
    for key in requested:
        if key not in METHODS:
            raise ValueError(f"methods: unknown method {key!r}; choose from {sorted(METHODS)}.")
        method = METHODS[key]
        if method.cuda_only and device.type != "cuda":
            raise ValueError(f"methods: {key!r} needs a CUDA device, but the benchmark runs on {device}.")
        out.append(method)
    return out


# --------------------------------------------------------------------------- measurement


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def make_parameters(shapes, dtype: torch.dtype, device, seed: int = 0) -> list[torch.Tensor]:
    """Parameters of these shapes with fixed random gradients (RMS about 1e-2,
    that of a trained model's gradients, far from any epsilon)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    params = []
    for _, shape in shapes:
        p = torch.randn(shape, generator=gen).mul_(0.02).to(device=device, dtype=dtype)
        p.requires_grad_(True)
        p.grad = torch.randn(shape, generator=gen).mul_(1e-2).to(device=device, dtype=dtype)
        params.append(p)
    return params


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device, nbytes: int | None = None, repeats: int = 10) -> dict[str, float]:
    """Bytes per second of ``dst.copy_(src)`` (a read and a write of each byte),
    median over ``repeats``: the bandwidth a streaming kernel can hope for."""
    device = torch.device(device)
    if nbytes is None:
        nbytes = 1 << 30 if device.type == "cuda" else 1 << 26
    n = nbytes // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    times = _time_calls(lambda: dst.copy_(src), device, warmup=2, repeats=repeats)
    median = statistics.median(times)
    return {"bytes_per_copy": 2 * 4 * n, "median_s": median, "bytes_per_s": 2 * 4 * n / median}


def stream_bandwidth(device, nbytes: int | None = None, repeats: int = 10) -> dict[str, float]:
    """Bytes per second of ``torch.add(a, b, alpha=0.5, out=c)`` on all intra-op threads: two read
    streams and a write stream (12 bytes per float32 element), median over ``repeats``. An
    elementwise optimizer step streams several tensors at once; this is its closer reference."""
    device = torch.device(device)
    if nbytes is None:
        nbytes = 1 << 30 if device.type == "cuda" else 3 << 27
    n = nbytes // 12
    a, b = torch.ones(n, device=device), torch.ones(n, device=device)
    c = torch.empty_like(a)
    times = _time_calls(lambda: torch.add(a, b, alpha=0.5, out=c), device, warmup=2, repeats=repeats)
    median = statistics.median(times)
    return {"bytes_per_call": 12 * n, "median_s": median, "bytes_per_s": 12 * n / median}


def _time_calls(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _synchronize(device)
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) / 1e3 for start, end in events]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def time_optimizer(optimizer, device, warmup: int, repeats: int) -> list[float]:
    """Seconds per ``optimizer.step()`` for ``repeats`` steps after ``warmup`` steps."""
    return _time_calls(optimizer.step, torch.device(device), warmup, repeats)


class _TinyLM(torch.nn.Module):
    """A small decoder-only Transformer language model, for the memory experiment."""

    def __init__(self, vocab: int, d_model: int, n_layer: int, n_head: int, ctx: int) -> None:
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, d_model)
        self.pos = torch.nn.Embedding(ctx, d_model)
        layer = torch.nn.TransformerEncoderLayer(
            d_model, n_head, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True, activation="gelu"
        )
        self.blocks = torch.nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(d_model)
        self.head = torch.nn.Linear(d_model, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        h = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        mask = torch.nn.Transformer.generate_square_subsequent_mask(t, device=idx.device)
        return self.head(self.norm(self.blocks(h, mask=mask, is_causal=True)))


def peak_training_memory(method: Method, device, *, steps: int = 3, seed: int = 0, size: str = "gpt2-small") -> dict:
    """Peak ``torch.cuda.max_memory_allocated`` over ``steps`` forward/backward/step
    iterations of a small Transformer LM trained with ``method`` (CUDA only)."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"device: peak training memory is measured with CUDA's allocator, got {device}.")
    dims = {"gpt2-small": (50257, 768, 6, 12, 256, 8), "tiny": (512, 64, 2, 4, 32, 2)}
    if size not in dims:
        raise ValueError(f"size must be one of {sorted(dims)}, got {size!r}.")
    vocab, d, layers, heads, ctx, batch = dims[size]
    if _uses_optbook_kernels(method):
        from optbook.kernels import adafactor_fused

        adafactor_fused.clear_plans()  # buffers of earlier plans would count toward this peak
    gc.collect()
    torch.cuda.empty_cache()
    torch.manual_seed(seed)
    model = _TinyLM(vocab, d, layers, heads, ctx).to(device)
    optimizer = method.build(list(model.parameters()))
    data = torch.randint(0, vocab, (batch, ctx + 1), device=device)
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(steps):
        logits = model(data[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), data[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    out = {
        "method": method.key,
        "model": f"{layers}-layer LM, width {d}, vocab {vocab}, batch {batch}x{ctx}",
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_bytes": base,
        "peak_bytes": torch.cuda.max_memory_allocated(device),
        "state_bytes": optimizer_state_bytes(optimizer),
    }
    del model, optimizer, data, logits, loss
    gc.collect()
    torch.cuda.empty_cache()
    return out


# --------------------------------------------------------------------------- provenance


def _version(distribution: str) -> str | None:
    # From the installed metadata: importing transformers to ask would cost seconds.
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(device, command: str | None = None) -> dict[str, Any]:
    """Where and when the numbers were taken: device, driver, versions, date,
    and the command that took them (``None`` for a call from Python)."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device_type": device.type,
        "device_name": _cpu_name(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "transformers": _version("transformers"),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": _git_commit(),
        "command": command,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            device_name=torch.cuda.get_device_name(device),
            driver=_nvidia_driver(),
            cuda_runtime=torch.version.cuda,
            compute_capability=f"{props.major}.{props.minor}",
            device_memory_bytes=props.total_memory,
            multiprocessors=props.multi_processor_count,
        )
    return info


# --------------------------------------------------------------------------- the run


@dataclass
class BenchSettings:
    """What one benchmark run measures (the CLI's options)."""

    device: str = "auto"
    models: tuple[str, ...] = ("gpt2-small", "llama-1b")
    dtypes: tuple[str, ...] = ("fp32", "bf16")
    methods: tuple[str, ...] | None = None
    warmup: int = 5
    repeats: int = 20
    small: bool | None = None  # None: small on CPU, full size on CUDA
    memory: bool = True
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except RuntimeError as exc:
            raise ValueError(f"device: {self.device!r} is not a torch device ({exc}).") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: 'cuda' was requested but torch.cuda.is_available() is False on this machine.")
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device: the benchmark runs on 'cpu' or 'cuda', got {self.device!r}.")
        return device

    def validate(self) -> None:
        for model in self.models:
            if model not in ALL_MODELS:
                raise ValueError(f"models: unknown model {model!r}; choose from {sorted(ALL_MODELS)}.")
        for dtype in self.dtypes:
            if dtype not in _DTYPES:
                raise ValueError(f"dtypes: unknown dtype {dtype!r}; choose from {sorted(_DTYPES)}.")
        if not (isinstance(self.warmup, int) and self.warmup >= 1):
            raise ValueError(f"warmup must be an int >= 1 (the first step allocates the state), got {self.warmup!r}.")
        if not (isinstance(self.repeats, int) and self.repeats >= 3):
            raise ValueError(f"repeats must be an int >= 3 so that a median means something, got {self.repeats!r}.")
        if not self.models or not self.dtypes:
            raise ValueError("models and dtypes must each name at least one entry.")


def _error_row(method: Method, exc: Exception) -> dict:
    # One failing row must not lose the others' measurements; the error is recorded.
    return {"method": method.key, "label": method.label, "family": method.family,
            "error": f"{type(exc).__name__}: {exc}"}


def _measure_sequential(methods, shapes, dtype, device, settings, floors, bandwidth, log) -> list[dict]:
    """GPU: one optimizer at a time on one shared parameter set (a 1B model's
    parameters, gradients and AdamW state leave no room for a copy per row)."""
    params = make_parameters(shapes, dtype, device, seed=settings.seed)
    n_elements = parameter_count(shapes)
    rows = []
    for method in methods:
        log(f"  {method.key} ...")
        try:
            rows.append(_measure(method, params, device, settings, floors[method.family], bandwidth, n_elements))
        except Exception as exc:
            log(f"  {method.key} failed: {type(exc).__name__}: {exc}")
            rows.append(_error_row(method, exc))
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _measure_interleaved(methods, shapes, dtype, device, settings, floors, bandwidth, log) -> list[dict]:
    """CPU: every optimizer on its own copy of the same parameters, stepped in
    turns by :func:`optbook.bench.timing.interleaved_step_times`."""
    from optbook.bench.timing import interleaved_step_times

    n_elements = parameter_count(shapes)
    optimizers, errors = {}, {}
    for method in methods:
        try:
            optimizers[method.key] = method.build(make_parameters(shapes, dtype, device, seed=settings.seed))
        except Exception as exc:
            errors[method.key] = _error_row(method, exc)
    log(f"  {', '.join(optimizers)} interleaved ...")
    try:
        samples = interleaved_step_times(optimizers, warmup=settings.warmup, repeats=settings.repeats)
    except Exception:
        # Some optimizer fails when stepped: time each alone to keep the others.
        samples = {}
        for key, optimizer in optimizers.items():
            try:
                samples[key] = time_optimizer(optimizer, device, settings.warmup, settings.repeats)
            except Exception as exc:
                errors[key] = _error_row(METHODS[key], exc)
    rows = []
    for method in methods:
        if method.key in errors:
            rows.append(errors[method.key])
        else:
            optimizer = optimizers[method.key]
            row = _row(method, samples[method.key], floors[method.family], bandwidth,
                       optimizer_state_bytes(optimizer), n_elements)
            for base in PAIRED_BASELINES:
                if base in samples and base not in errors and len(samples[base]) == len(samples[method.key]):
                    row.setdefault("paired_ratio_vs", {})[base] = paired_ratio(samples[method.key], samples[base])
            rows.append(row)
    return rows


#: The rows that every CPU row is compared with round by round (when they run).
PAIRED_BASELINES = ("adamw-fused", "torch-adafactor", "torch-adafactor-foreach")


def paired_ratio(times: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """Median and quartiles of the per-round ratios ``times[i] / baseline[i]`` of two optimizers stepped in
    turns (the same round, so the same load on a shared machine)."""
    if len(times) != len(baseline) or not times:
        raise ValueError(f"times and baseline: need the same number (> 0) of rounds, got {len(times)} and "
                         f"{len(baseline)}.")
    ratios = sorted(a / b for a, b in zip(times, baseline))
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return {"median": statistics.median(ratios), "q1": q1, "q3": q3, "rounds": len(ratios)}


def _uses_optbook_kernels(method: Method) -> bool:
    return method.key.startswith("optbook-fused")


def _measure(method: Method, params, device, settings, traffic, bandwidth: float, n_elements: int) -> dict:
    if _uses_optbook_kernels(method):
        from optbook.kernels import adafactor_fused

        adafactor_fused.clear_plans()
    optimizer = method.build(params)
    if method.graph:
        replay = _capture_step(optimizer, device, settings.warmup)
        times = _time_calls(replay, device, warmup=1, repeats=settings.repeats)
    else:
        times = time_optimizer(optimizer, device, settings.warmup, settings.repeats)
    row = _row(method, times, traffic, bandwidth, optimizer_state_bytes(optimizer), n_elements)
    if _uses_optbook_kernels(method):
        # Tile tables and partial sums: resident between steps, but not state.
        row["scratch_bytes"] = adafactor_fused.cached_plan_bytes()
    return row


def _capture_step(optimizer, device, warmup: int) -> Callable[[], None]:
    """Warm ``optimizer.step`` up on a side stream, capture one step in a CUDA
    graph, and return the graph's replay: the step without Python or launch
    overhead."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(max(warmup, 3)):
            optimizer.step()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        optimizer.step()
    return graph.replay


def _row(method: Method, times: list[float], traffic, bandwidth: float, state: int, n_elements: int) -> dict:
    median = statistics.median(times)
    return {
        "method": method.key,
        "label": method.label,
        "family": method.family,
        "median_s": median,
        "min_s": min(times),
        "max_s": max(times),
        "repeats": len(times),
        "model_bytes": traffic.total,
        "model_bytes_per_element": traffic.total / n_elements,
        "effective_bytes_per_s": traffic.total / median,
        "fraction_of_copy_bandwidth": (traffic.total / median) / bandwidth,
        "state_bytes": state,
    }


def run_benchmark(
    settings: BenchSettings, log: Callable[[str], None] | None = None, command: str | None = None
) -> dict[str, Any]:
    """Run every (model, dtype, method) of ``settings``; return the record as a dict.

    ``command`` is stored in the provenance (the CLI passes its command line).
    """
    settings.validate()
    device = settings.resolved_device()
    methods = applicable_methods(device, settings.methods)
    small = (device.type != "cuda") if settings.small is None else settings.small
    log = log or (lambda msg: None)
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "gpu" if device.type == "cuda" else "cpu",
        "provenance": provenance(device, command),
        "settings": {
            "models": list(settings.models), "dtypes": list(settings.dtypes), "methods": [m.key for m in methods],
            "warmup": settings.warmup, "repeats": settings.repeats, "small": small, "seed": settings.seed,
            "timer": "cuda events, one optimizer after the other" if device.type == "cuda"
            else "time.perf_counter_ns, optimizers interleaved step by step",
        },
        "copy_bandwidth": copy_bandwidth(device),
        "stream_bandwidth": stream_bandwidth(device),
        "results": [],
        "memory": [],
    }
    bandwidth = record["copy_bandwidth"]["bytes_per_s"]
    log(f"copy bandwidth on {record['provenance']['device_name']}: {bandwidth / 1e9:.1f} GB/s")
    for model in settings.models:
        shapes = parameter_shapes(model, small=small)
        just_shapes = [s for _, s in shapes]
        n_elements = parameter_count(shapes)
        for dtype_name in settings.dtypes:
            dtype = _DTYPES[dtype_name]
            dtype_str = str(dtype).replace("torch.", "")
            floors = {
                "adafactor": roofline.fused_adafactor_bytes(just_shapes, dtype_str),
                "adamw": roofline.adamw_bytes(just_shapes, dtype_str),
            }
            case = {
                "model": model,
                "description": ALL_MODELS[model][0] + (" (small CPU variant)" if small else ""),
                "dtype": dtype_name,
                "parameters": n_elements,
                "tensors": len(shapes),
                "floor_bytes": {k: v.total for k, v in floors.items()},
                "floor_s": {k: v.total / bandwidth for k, v in floors.items()},
                "rows": [],
            }
            log(f"{model} {dtype_name}:")
            if device.type == "cuda":
                case["rows"] = _measure_sequential(methods, shapes, dtype, device, settings, floors, bandwidth, log)
            else:
                case["rows"] = _measure_interleaved(methods, shapes, dtype, device, settings, floors, bandwidth, log)
            _add_ratios(case)
            record["results"].append(case)
            gc.collect()
    if settings.memory and device.type == "cuda":
        for key in ("adamw-fused", "optbook-fused", "optbook", "torch-adafactor-foreach"):
            if key in METHODS and (settings.methods is None or key in settings.methods):
                log(f"peak memory, {key} ...")
                try:
                    record["memory"].append(peak_training_memory(METHODS[key], device, seed=settings.seed))
                except Exception as exc:  # recorded, not fatal: the timings above stay
                    record["memory"].append({"method": key, "error": f"{type(exc).__name__}: {exc}"})
    record["targets"] = evaluate_targets(record)
    return record


def _add_ratios(case: dict) -> None:
    by_key = {row["method"]: row for row in case["rows"] if "error" not in row}
    for baseline in ("torch-adafactor-foreach", "torch-adafactor", "adamw-fused", "adamw"):
        if baseline in by_key:
            base = by_key[baseline]["median_s"]
            for row in by_key.values():
                row.setdefault("speedup_vs", {})[baseline] = base / row["median_s"]
    if "adamw-fused" in by_key:
        # The honest reference on a CPU: the best fused elementwise step of the same run.
        rate = by_key["adamw-fused"]["effective_bytes_per_s"]
        for row in by_key.values():
            row["byte_rate_vs_adamw_fused"] = row["effective_bytes_per_s"] / rate
    state_base = by_key.get("adamw-fused", by_key.get("adamw"))
    if state_base is not None and state_base["state_bytes"]:
        for row in by_key.values():
            row["state_fraction_of_adamw"] = row["state_bytes"] / state_base["state_bytes"]


def evaluate_targets(record: dict) -> dict[str, Any]:
    """The fused kernel's performance goals, each with the measured value it was judged on.

    Only a CUDA record is judged; a CPU record gets ``{"judged": False}``.
    """
    if record.get("kind") != "gpu":
        return {"judged": False, "reason": "targets are defined for an H100/H200 run; this record is from a CPU"}
    out: dict[str, Any] = {"judged": True}

    def row(model, dtype, method):
        for case in record["results"]:
            if case["model"] == model and case["dtype"] == dtype:
                for r in case["rows"]:
                    if r["method"] == method and "error" not in r:
                        return case, r
        return None, None

    for dtype in ("fp32", "bf16"):
        for key, note in (("optbook-fused", ""), ("optbook-fused-graph", " (CUDA graph)")):
            case, fused = row("gpt2-small", dtype, key)
            _, foreach = row("gpt2-small", dtype, "torch-adafactor-foreach")
            _, adamw = row("gpt2-small", dtype, "adamw-fused")
            if fused and foreach:
                ratio = foreach["median_s"] / fused["median_s"]
                out[f"gpt2-small/{dtype}: fused{note} >= 5x torch foreach"] = {"value": ratio, "met": ratio >= 5}
            if fused and adamw:
                ratio = adamw["median_s"] / fused["median_s"]
                out[f"gpt2-small/{dtype}: fused{note} faster than AdamW(fused)"] = {"value": ratio, "met": ratio > 1}
            if fused and adamw and adamw["state_bytes"] and not note:
                frac = fused["state_bytes"] / adamw["state_bytes"]
                out[f"gpt2-small/{dtype}: state <= 1% of AdamW"] = {"value": frac, "met": frac <= 0.01}
    case, fused = row("llama-1b", "fp32", "optbook-fused")
    if fused:
        # The floor: 20 B per element at the copy bandwidth measured in the same run.
        floor_s = roofline.floor_seconds(
            roofline.adafactor_bytes_per_element("float32") * case["parameters"],
            record["copy_bandwidth"]["bytes_per_s"],
        )
        frac = floor_s / fused["median_s"]
        out["llama-1b/fp32: >= 70% of the 20 B/element floor"] = {"value": frac, "met": frac >= 0.7}
    return out


# --------------------------------------------------------------------------- output


def format_table(record: dict) -> str:
    """The record as a plain-text table, one block per (model, dtype)."""
    prov = record["provenance"]
    lines = []
    if record["kind"] == "cpu":
        small = record.get("settings", {}).get("small", True)
        lines.append(f"CPU RUN (time.perf_counter, {'small model variants' if small else 'full-size models'}, "
                     f"{record['provenance'].get('torch_threads', '?')} threads): "
                     "these times say nothing about a GPU.")
    lines.append(
        f"device: {prov['device_name']} | torch {prov['torch']} | triton {prov['triton']} | {prov['date_utc']}"
        + (f" | driver {prov.get('driver')}" if record["kind"] == "gpu" else "")
    )
    bw = record["copy_bandwidth"]["bytes_per_s"]
    lines.append(f"measured copy bandwidth: {bw / 1e9:.1f} GB/s")
    if "stream_bandwidth" in record:
        lines.append(f"measured 3-stream (2 reads, 1 write) bandwidth: {record['stream_bandwidth']['bytes_per_s'] / 1e9:.1f} GB/s")
    for case in record["results"]:
        lines.append("")
        lines.append(
            f"{case['model']} {case['dtype']}: {case['parameters']:,} parameters in {case['tensors']} tensors; "
            f"floor {case['floor_bytes']['adafactor'] / case['parameters']:.2f} B/element (Adafactor), "
            f"{case['floor_bytes']['adamw'] / case['parameters']:.2f} B/element (AdamW)"
        )
        base = "torch-adafactor-foreach"
        vs_adamw = any("byte_rate_vs_adamw_fused" in row for row in case["rows"])
        paired = any("adamw-fused" in row.get("paired_ratio_vs", {}) for row in case["rows"])
        header = (f"  {'method':<44} {'median ms':>10} {'x vs torch foreach':>19} {'eff. GB/s':>10} "
                  f"{'% copy bw':>10} {'state':>12}" + (f" {'B/s vs AdamW(fused)':>20} {'t vs AdamW(fused)':>18}"
                                                        if vs_adamw else "")
                  + (f" {'paired t/AdamW(fused) [IQR]':>30}" if paired else ""))
        lines.append(header)
        for row in case["rows"]:
            if "error" in row:
                lines.append(f"  {row['label']:<44} FAILED: {row['error'][:70]}")
                continue
            speed = row.get("speedup_vs", {}).get(base)
            lines.append(
                f"  {row['label']:<44} {row['median_s'] * 1e3:>10.3f} "
                f"{(f'{speed:.2f}x' if speed else '-'):>19} {row['effective_bytes_per_s'] / 1e9:>10.2f} "
                f"{100 * row['fraction_of_copy_bandwidth']:>9.1f}% {_fmt_bytes(row['state_bytes']):>12}"
                + (f" {row['byte_rate_vs_adamw_fused']:>19.2f}x {1 / row['speedup_vs']['adamw-fused']:>17.2f}x"
                   if "byte_rate_vs_adamw_fused" in row else "")
                + (_fmt_paired(row["paired_ratio_vs"]["adamw-fused"]) if "adamw-fused" in row.get("paired_ratio_vs", {})
                   else "")
            )
    if record.get("memory"):
        lines.append("")
        lines.append("peak memory of forward/backward/step (torch.cuda.max_memory_allocated):")
        for m in record["memory"]:
            if "error" in m:
                lines.append(f"  {m['method']:<26} FAILED: {m['error'][:70]}")
                continue
            lines.append(f"  {m['method']:<26} peak {_fmt_bytes(m['peak_bytes']):>10}  "
                         f"state {_fmt_bytes(m['state_bytes']):>10}  ({m['model']})")
    targets = record.get("targets", {})
    if targets.get("judged"):
        lines.append("")
        lines.append("targets:")
        for name, t in targets.items():
            if name != "judged":
                lines.append(f"  [{'met' if t['met'] else 'NOT met'}] {name}: {t['value']:.3g}")
    return "\n".join(lines)


def _fmt_paired(p: dict) -> str:
    return f" {p['median']:>11.2f}x [{p['q1']:.2f}, {p['q3']:.2f}]".ljust(31)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def record_path(record: dict, directory: Path | str | None = None) -> Path:
    """Where ``--record`` puts a GPU record: ``book/data/bench-<device>-<date>.json``."""
    if record.get("kind") != "gpu":
        raise ValueError("record: only a CUDA run is a record for the book; write a CPU run with --output instead.")
    directory = Path(directory) if directory is not None else _ROOT / "book" / "data"
    slug = "".join(c if c.isalnum() else "-" for c in record["provenance"]["device_name"].lower()).strip("-")
    day = record["provenance"]["date_utc"][:10]
    return directory / f"bench-{slug}-{day}.json"


def load_records(directory: Path | str | None = None) -> list[dict]:
    """Every GPU record under ``directory`` (default ``book/data``), oldest first.

    A file that is not a record of this schema from a GPU is skipped: the book
    must never plot a CPU run as a GPU result.
    """
    directory = Path(directory) if directory is not None else _ROOT / "book" / "data"
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("schema") == SCHEMA and data.get("kind") == "gpu":
            data["_path"] = str(path)
            out.append(data)
    return sorted(out, key=lambda d: d["provenance"]["date_utc"])


def write_record(record: dict, path: Path | str) -> Path:
    """Write ``record`` as JSON (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    return path
