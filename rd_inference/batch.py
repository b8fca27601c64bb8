"""Batches: many prompts x seeds, one run directory each, resumable, split across processes.

A batch lives in one output folder::

    DIR/batch.json                    the settings every item was made with (a re-run must match them)
    DIR/items/<row>-<slug>-s<seed>/   one run directory per (prompt, seed), written by :func:`search`
    DIR/results.jsonl                 the index: one line per finished item, in prompt-file order

Run directories are complete or absent (see :mod:`rd_inference.run_dir`), so "finished" means "its run
directory has a summary.json". The index is never appended to: it is rebuilt from the finished run
directories and swapped in whole (temporary file + ``os.replace``), so it cannot hold duplicates or torn
lines, and a killed run loses only the items that were in flight. Re-running the same batch skips the
finished items and runs the rest from scratch.

Several processes (``accelerate launch --num_processes K``) each take a share of the unfinished items
(``PartialState.split_between_processes``); the main process merges the index after
``wait_for_everyone()``.

Example:
    >>> items = read_prompts("prompts.txt", seeds=[0, 1])
    >>> prepare_batch("out/geneval", items, {"strategy": "bon", "budget": "4x"})
    >>> run_batch(pipe, items, "out/geneval", verifier=verifier, strategy="bon", budget="4x")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .run_dir import slug

INDEX = "results.jsonl"
SETTINGS = "batch.json"
ITEMS = "items"
JSONL_KEYS = ("prompt", "seed", "criteria", "metadata")
# Arguments run_batch sets itself per item; passing them would be ambiguous.
_PER_ITEM = ("prompt", "seed", "out", "progress", "stop_at_node")


@dataclass(frozen=True)
class BatchItem:
    """One search of the batch: prompt ``row`` (0-based, blank lines not counted) with one seed."""

    row: int
    prompt: str
    seed: int
    criteria: Any = None  # per-row verifier criteria (see rd_inference.criteria.resolve_criteria)
    metadata: dict | None = None  # copied to the index untouched

    @property
    def name(self) -> str:
        """The run directory's name under ``DIR/items``: stable for the same prompt row and seed."""
        return f"{self.row:05d}-{slug(self.prompt)}-s{self.seed}"


# ------------------------------------------------------------------------------------------ reading input
def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-3"`` (inclusive) or a mix like ``"0-3,10"`` -> a list of distinct seeds."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        lo, dash, hi = part.partition("-")
        if not (lo.isdigit() and (not dash or hi.isdigit())):
            raise ValueError(f"--seeds {text!r}: write non-negative integers like 0,1,2 or a range like 0-7")
        span = range(int(lo), int(hi) + 1) if dash else [int(lo)]
        if dash and not span:
            raise ValueError(f"--seeds {text!r}: the range {part} is empty; write it low-high")
        seeds += [s for s in span if s not in seeds]
    return seeds


def read_prompts(path: str | os.PathLike, *, seeds: Sequence[int] = (0,), fmt: str = "auto") -> list[BatchItem]:
    """Read a prompts file into batch items, one per (prompt, seed), in file order.

    ``fmt="text"``: one prompt a line, blank lines skipped. ``fmt="jsonl"``: one JSON object a line with
    ``prompt`` (string) and optional ``seed`` (integer or list of integers, replacing ``seeds`` for that
    row), ``criteria`` (verifier criteria for that row) and ``metadata`` (an object copied to the index).
    ``"auto"`` reads ``.jsonl`` / ``.ndjson`` files as JSONL and anything else as text. Every problem is
    reported with its line number before any work starts.
    """
    path = Path(path)
    if fmt not in ("auto", "text", "jsonl"):
        raise ValueError(f"unknown prompts format {fmt!r}; use auto, text or jsonl")
    if not path.is_file():
        raise FileNotFoundError(f"prompts file not found: {path}")
    if fmt == "auto":
        fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "text"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    seeds = list(seeds)
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of non-negative integers, got {seeds!r}")
    items: list[BatchItem] = []
    row = 0
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if fmt == "text":
            prompt, row_seeds, criteria, metadata = line.strip(), seeds, None, None
        else:
            prompt, row_seeds, criteria, metadata = _parse_jsonl_row(line, f"{path}:{lineno}", seeds)
        items += [BatchItem(row, prompt, s, criteria, metadata) for s in row_seeds]
        row += 1
    if not items:
        raise ValueError(f"{path} holds no prompts (it is empty or only blank lines)")
    return items


def _parse_jsonl_row(line: str, where: str, seeds: list[int]) -> tuple[str, list[int], Any, dict | None]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); write one JSON object "
                         'a line, e.g. {"prompt": "two red circles", "seed": 3}') from None
    if not isinstance(row, dict):  # bad user input, reported like every other one (ValueError -> one line)
        raise ValueError(f"{where}: expected a JSON object with a \"prompt\", got {type(row).__name__}")  # noqa: TRY004
    unknown = sorted(set(row) - set(JSONL_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; the keys are {', '.join(JSONL_KEYS)}")
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{where}: \"prompt\" must be a non-empty string, got {prompt!r}")
    seed = row.get("seed")
    if seed is not None:
        row_seeds = seed if isinstance(seed, list) else [seed]
        if not row_seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in row_seeds):
            raise ValueError(f"{where}: \"seed\" must be a non-negative integer or a list of them, got {seed!r}")
        seeds = list(dict.fromkeys(row_seeds))
    criteria = row.get("criteria")
    if criteria is not None:
        from .criteria import resolve_criteria

        if not isinstance(criteria, (str, list, dict)):
            raise ValueError(f"{where}: \"criteria\" must be a string, list or object, got {criteria!r}")
        try:
            resolve_criteria(criteria)
        except (ValueError, TypeError, FileNotFoundError) as exc:
            raise ValueError(f"{where}: bad \"criteria\": {exc}") from None
    metadata = row.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"{where}: \"metadata\" must be a JSON object, got {metadata!r}")
    return prompt.strip(), seeds, criteria, metadata


# ------------------------------------------------------------------------------------------ the output folder
def prepare_batch(out: str | os.PathLike, items: Sequence[BatchItem], settings: dict[str, Any], *,
                  is_main: bool = True) -> Path:
    """Check ``out`` before any work: writable, and (on a re-run) made with the same ``settings``.

    ``settings`` is anything JSON-able that decides the items' results (model, verifier, strategy …);
    the first run records it in ``DIR/batch.json`` and a re-run with different settings is refused, so
    one index never mixes two configurations. The main process also clears what a killed run left
    behind: hidden partial run directories and incomplete item folders (they are redone from scratch).
    """
    out = Path(out)
    # ValueError, not OSError: bad user input that the CLI reports as one line.
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; choose a folder")
    try:
        (out / ITEMS).mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("ok")  # os.access says yes to root on a read-only mount; a real write does not
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write the batch output folder {out} ({exc.strerror or exc}); choose a "
                         "writable --out") from None
    settings = json.loads(json.dumps(settings))  # the form it has after a round trip through batch.json
    recorded_path = out / SETTINGS
    if recorded_path.is_file():
        recorded = json.loads(recorded_path.read_text())
        changed = sorted(k for k in set(recorded) | set(settings) if recorded.get(k) != settings.get(k))
        if changed:
            diff = "; ".join(f"{k}: {recorded.get(k)!r} -> {settings.get(k)!r}" for k in changed)
            raise ValueError(f"{out} holds a batch made with other settings ({diff}); re-run with the same "
                             "settings to resume it, or choose a new --out")
    elif is_main:
        _write_atomic(recorded_path, json.dumps(settings, indent=2) + "\n")
    names = {item.name for item in items}
    for item in items:
        _check_item_dir(out, item)
    if is_main:
        for leftover in (out / ITEMS).glob(".*.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in out.glob(f".{INDEX}.tmp-*"):
            leftover.unlink(missing_ok=True)
        for folder in (out / ITEMS).iterdir():
            if folder.name in names and folder.is_dir() and not (folder / "summary.json").is_file():
                shutil.rmtree(folder)  # cannot come from an atomic write; redo it rather than trust it
    return out


def _check_item_dir(out: Path, item: BatchItem) -> None:
    """A finished run directory under this item's name must be this item's (the prompt file may have changed)."""
    summary = out / ITEMS / item.name / "summary.json"
    if not summary.is_file():
        return
    config = json.loads(summary.read_text())["config"]
    if config.get("prompt") != item.prompt or config.get("seed") != item.seed:
        raise ValueError(f"{summary.parent} was made for prompt {config.get('prompt')!r} seed {config.get('seed')}, "
                         f"but prompt row {item.row} is now {item.prompt!r} seed {item.seed}: the prompts file "
                         "changed since that run; restore it or choose a new --out")


def is_finished(out: str | os.PathLike, item: BatchItem) -> bool:
    return (Path(out) / ITEMS / item.name / "summary.json").is_file()


def item_record(out: str | os.PathLike, item: BatchItem) -> dict[str, Any]:
    """The index line of a finished item, read from its run directory (paths relative to ``out``)."""
    run = Path(out) / ITEMS / item.name
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text())
    counts = summary["counts"]
    finished = datetime.fromtimestamp(summary_path.stat().st_mtime, tz=timezone.utc)
    record = {
        "item": item.name,
        "row": item.row,
        "prompt": item.prompt,
        "seed": item.seed,
        "run_dir": f"{ITEMS}/{item.name}",
        "image": f"{ITEMS}/{item.name}/chosen.png",
        "score": summary["chosen"]["score"],
        "node": summary["chosen"]["node"],
        "counts": {k: v for k, v in counts.items() if k != "seconds"},
        "seconds": counts["seconds"],
        "finished": finished.isoformat(timespec="seconds"),
    }
    if item.criteria is not None:
        record["criteria"] = item.criteria
    if item.metadata is not None:
        record["metadata"] = item.metadata
    return record


class Index:
    """``DIR/results.jsonl``, rebuilt from the finished run directories and replaced whole on each write."""

    def __init__(self, out: str | os.PathLike, items: Sequence[BatchItem]):
        self.out, self.items = Path(out), list(items)
        self._records: dict[int, dict[str, Any]] = {}  # finished items never change: read each once

    def refresh(self) -> list[dict[str, Any]]:
        for i, item in enumerate(self.items):
            if i not in self._records and is_finished(self.out, item):
                self._records[i] = item_record(self.out, item)
        records = [self._records[i] for i in sorted(self._records)]
        _write_atomic(self.out / INDEX, "".join(json.dumps(r) + "\n" for r in records))
        return records


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_index(out: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(out) / INDEX
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


# ------------------------------------------------------------------------------------------ running
class SingleProcess:
    """The subset of ``accelerate.PartialState`` that :func:`run_batch` uses, for one plain process."""

    process_index, num_processes, is_main_process = 0, 1, True

    def wait_for_everyone(self) -> None:
        pass

    @contextlib.contextmanager
    def split_between_processes(self, inputs: list) -> Iterator[list]:
        yield inputs


@dataclass
class BatchReport:
    ran: list[BatchItem] = field(default_factory=list)  # items this process searched
    skipped: int = 0  # items already finished when the batch started
    records: list[dict[str, Any]] | None = None  # the merged index (main process only)


@contextlib.contextmanager
def item_criteria(verifier: Any, criteria: Any) -> Iterator[None]:
    """Score with a row's own criteria, then restore the shared verifier's (one verifier serves all items)."""
    if criteria is None:
        yield
        return
    if not hasattr(verifier, "criteria"):
        raise ValueError(f"a prompt row sets criteria, but the verifier {type(verifier).__name__} takes none; "
                         "use a VLM verifier or drop the row's criteria")
    from .criteria import resolve_criteria

    saved = verifier.criteria
    verifier.criteria = resolve_criteria(criteria)
    try:
        yield
    finally:
        verifier.criteria = saved


def run_batch(pipe, items: Sequence[BatchItem], out: str | os.PathLike, *, verifier: Any, state: Any = None,
              on_item: Callable[[BatchItem, dict[str, Any]], None] | None = None, show_progress: bool = True,
              poll_seconds: float = 2.0, **search_kwargs: Any) -> BatchReport:
    """Search every unfinished item into ``DIR/items/<name>`` and write ``DIR/results.jsonl``.

    Call :func:`prepare_batch` first. ``state`` is an ``accelerate.PartialState`` (or None for one
    process): the unfinished items are split between its processes, each using its own ``pipe`` and its
    own ``verifier`` (loaded once, reused for every item). ``search_kwargs`` go to :func:`search`
    (strategy, budget, steps …). ``on_item(item, record)`` is called after each item this process
    finishes; raising from it stops the batch (what is finished stays finished).
    """
    from tqdm.auto import tqdm

    from .api import search

    clash = sorted(set(search_kwargs) & set(_PER_ITEM))
    if clash:
        raise TypeError(f"run_batch sets {clash} per item; do not pass them")
    out, items = Path(out), list(items)
    state = state if state is not None else SingleProcess()
    index = Index(out, items)
    state.wait_for_everyone()  # the main process has cleared leftovers; nobody has started yet
    pending = [item for item in items if not is_finished(out, item)]
    state.wait_for_everyone()  # everyone has the same pending list before anyone adds to the finished ones
    report = BatchReport(skipped=len(items) - len(pending))
    several = state.num_processes > 1
    with state.split_between_processes(pending) as mine:
        mine = list(mine)
    bar = tqdm(total=len(mine) if several else len(items), initial=0 if several else report.skipped,
               desc=f"process {state.process_index}" if several else "items", unit="item",
               position=state.process_index + 1 if several else 0, disable=not show_progress, dynamic_ncols=True)
    total = _TotalBar(out, pending, len(items), report.skipped, poll_seconds) \
        if several and state.is_main_process and show_progress else None
    try:
        for item in mine:
            if is_finished(out, item):  # another run of the same batch got here first
                continue
            with item_criteria(verifier, item.criteria):
                result = search(pipe, item.prompt, verifier=verifier, seed=item.seed, out=out / ITEMS / item.name,
                                **search_kwargs)
            report.ran.append(item)
            record = item_record(out, item)
            if state.is_main_process:
                index.refresh()  # a live index; the final merge below completes it
            bar.set_postfix(score=f"{result.score:.4f}")
            bar.update(1)
            if on_item is not None:
                on_item(item, record)
        state.wait_for_everyone()
    finally:
        bar.close()
        if total is not None:
            total.close()
    if state.is_main_process:
        report.records = index.refresh()
    return report


class _TotalBar:
    """On the main process of several: all items, counted from the run directories every few seconds."""

    def __init__(self, out: Path, pending: list[BatchItem], total: int, done: int, poll_seconds: float):
        from tqdm.auto import tqdm

        self.out, self.pending, self.poll = out, list(pending), poll_seconds
        self.bar = tqdm(total=total, initial=done, desc="all processes", unit="item", position=0, dynamic_ncols=True)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _update(self) -> None:
        waiting = [item for item in self.pending if not is_finished(self.out, item)]
        newly, self.pending = len(self.pending) - len(waiting), waiting
        if newly:
            self.bar.update(newly)

    def _run(self) -> None:
        while not self.stop.wait(self.poll):
            self._update()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self._update()
        self.bar.close()
