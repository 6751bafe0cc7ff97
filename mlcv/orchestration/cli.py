"""What ``launch.py`` does once its flags are parsed."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections
from absl import flags, logging

from mlcv.config import ConfigError
from mlcv.orchestration import failures
from mlcv.training.interrupts import Interrupted


def _root_cause(e: BaseException) -> BaseException:
    """The ConfigError inside a chain of wrapping exceptions, else ``e``."""
    seen, cur = set(), e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ConfigError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return e


def _config_file(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _in_config_file(e: BaseException) -> tuple[str, int] | None:
    """The file and line of an experiment file's ``get_config`` where ``e`` was raised, else None.

    The deepest frame in the file of the ``get_config`` frame counts, so an error in a helper of the
    file is placed too. ml_collections re-raises a TypeError or ValueError of ``get_config`` with the
    traceback as text; its ``File "...", line N`` lines are read the same way.
    """
    frames: list[tuple[str, int, str]] = []
    tb = e.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno, tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    # The text of the re-raised traceback replaces the frames: it is the one that reaches get_config.
    embedded = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', str(e))
    if embedded:
        frames = [(f, int(n), fn) for f, n, fn in embedded]
    config_file = next((f for f, _, fn in frames if fn == "get_config"), None)
    if config_file is None:
        return None
    return next((f, n) for f, n, _ in reversed(frames) if f == config_file)


def _unknown_key(text: str) -> tuple[str, str]:
    """The key and the ``(did you mean ...?)`` hint of ml_collections' message for a missing key."""
    m = re.search(r'Key "([\w-]+)" does not exist', text) or re.match(r"'*([\w-]+)", text)
    hint = text.split("Did you mean", 1)
    return (m.group(1) if m else ""), (f" (did you mean{hint[1].rstrip('?')}?)" if len(hint) == 2 else "")


def _explain(e: BaseException, argv: list[str]) -> str:
    """One line that names the flag, key or file at fault."""
    # ml_collections re-raises errors of get_config() with the traceback as text.
    embedded = re.findall(r"ConfigError: (.+)$", str(e), flags=re.MULTILINE)
    if embedded:
        return embedded[-1].strip()
    cause = _root_cause(e)
    if isinstance(cause, ConfigError):
        return str(cause)
    text = " ".join(str(e).replace("\\n", " ").replace("\\'", "'").split())
    if text[:1] in "'\"" and text[-1:] == text[:1]:
        text = text[1:-1]
    where = _in_config_file(e)
    if where is not None:
        # A mistake of the experiment file itself, not of an override: name the file and the line.
        if isinstance(e, (AttributeError, KeyError)):
            key, hint = _unknown_key(text)
            return f"{where[0]}:{where[1]}: unknown config key {key!r}{hint}"
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        last = last if re.match(r"\w+(Error|Exception): ", last) else f"{type(e).__name__}: {last}"
        return f"{where[0]}:{where[1]}: {last}"
    if isinstance(e, (AttributeError, KeyError)):
        # ml_collections reports a key missing from a locked config this way;
        # find the override that named it.
        key, hint = _unknown_key(text)
        culprit = next(
            (a.split("=")[0] for a in argv if a.startswith("--config.") and key in a.split("=")[0].split(".")), None
        )
        if culprit:
            return f"unknown config key {key!r} in {culprit}{hint}"
        return f"bad config override: {text}"
    return text.replace("FATAL Flags parsing error: ", "")


def fail(e: BaseException, argv: list[str]) -> None:
    """Prints the one-line explanation of a flag or config error and exits 2."""
    print(f"error: {_explain(e, argv)}", file=sys.stderr)
    sys.exit(2)


def check_config_file(argv: list[str]) -> None:
    """Exits with a clear error when ``--config`` names a file that does not exist."""
    path = _config_file(argv)
    if path is not None and not Path(path.split(":")[0]).is_file():
        print(f"error: config file {path.split(':')[0]!r} (--config) does not exist", file=sys.stderr)
        sys.exit(2)


def parse_flags(argv: list[str], load_config: Callable[[], ml_collections.ConfigDict]) -> list[str]:
    """Parses absl flags; on any error prints one ``error:`` line and exits 2.

    ``load_config`` forces the config file to load, since ml_collections
    defers a failed load until the value is first read.
    """
    check_config_file(argv)
    try:
        rest = flags.FLAGS(argv)
        load_config()
    except Exception as e:  # noqa: BLE001 - every parse failure ends in one line
        fail(e, argv)
    return rest


def default_workdir(config_path: str) -> str:
    """``runs/<experiment>`` for ``experiments/<experiment>.py[:arg]``."""
    return str(Path("runs") / Path(config_path.split(":")[0]).stem)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (``--sweep_shard``) as ``(i, n)`` with ``0 <= i < n``; ConfigError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ConfigError(f"--sweep_shard={text!r} must be i/n, the i-th of n shards counted from 0 (e.g. 0/4)")
    i, n = int(m.group(1)), int(m.group(2))
    if not i < n:
        raise ConfigError(f"--sweep_shard={text}: the shard index must be below the shard count, 0/{n} to {n - 1}/{n}")
    return i, n


def load_sweep(config_path: str) -> tuple[str, Any]:
    """What ``--sweep`` runs for the experiment file ``path[:arg]``: ``("sweep", dict)`` or ``("ablation", rows)``.

    It calls the file's ``get_ablation(arg)`` if it has one, else its
    ``get_sweep(arg)``, with the same arg as ``get_config``.

    Raises:
      ConfigError: the file defines neither, or its arg is bad.
    """
    path, _, arg = config_path.partition(":")
    # The file is loaded as a module of its own; ml_collections loaded it apart
    # too, for get_config. Experiment files import each other through the
    # repository root, which launch.py's directory puts on sys.path.
    spec = importlib.util.spec_from_file_location(f"_mlcv_experiment_{Path(path).stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"config file {path!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for kind in ("ablation", "sweep"):
        fn = getattr(module, f"get_{kind}", None)
        if callable(fn):
            return kind, fn(arg or None)
    raise ConfigError(f"{path} defines no get_sweep(arg=None) (nor get_ablation); --sweep needs one beside get_config")


def _sweep(config: ml_collections.ConfigDict, workdir: str | None, config_path: str, shard: str | None) -> int:
    # Checked before mlcv.orchestration.sweep (and with it JAX) is imported, so bad input fails in a blink.
    index_count = parse_shard(shard) if shard is not None else (0, 1)
    kind, spec = load_sweep(config_path)
    if kind == "ablation":
        if shard is not None:
            raise ConfigError("--sweep_shard applies to sweeps; an ablation runs its rows in order")
        from mlcv.orchestration import ablation

        workdir = workdir or default_workdir(config_path)
        failures.check_workdir(workdir)
        ablation.run(config, spec, workdir)
        print(f"{workdir}: table in {workdir}/ablation.md")
        return 0
    from mlcv.orchestration import sweep
    from mlcv.orchestration import sweep_table as sweep_results

    workdir = workdir or default_workdir(config_path) + "_sweep"
    failures.check_workdir(workdir)
    records = sweep.run(config, spec, workdir, shard=index_count)
    res = sweep_results.results(workdir)
    done = sum(r["status"] == "complete" for r in res["rows"])
    ran = sum(r["ran"] for r in records)
    print(f"{workdir}: {done}/{len(res['rows'])} trials complete ({ran} run now); table in {workdir}/sweep.md")
    print(sweep_results.selected_line(res))
    return 0


def init_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Joins a multi-host run when a coordinator is named by flag or by ``JAX_COORDINATOR_ADDRESS``.

    The process count and index come from the flags, else ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``,
    else JAX's own cluster detection (SLURM, Open MPI, ...). Must run before JAX touches a device.
    """
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not coordinator:
        return
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    import jax

    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def enable_compilation_cache() -> str | None:
    """Turns on JAX's persistent compilation cache; returns its directory (None when turned off).

    ``$MLCV_COMPILATION_CACHE`` names the directory (default ``~/.cache/mlcv/jax``); ``off`` disables it.
    A second launch of the same experiment then loads its compiled steps instead of compiling them;
    ``summary.json`` keeps compile time apart from training time, so the saving shows there.
    """
    path = os.environ.get("MLCV_COMPILATION_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "mlcv", "jax"))
    if path.lower() in ("", "0", "off", "none"):
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    # JAX's default caches only compilations over a second; the small steps of tests and digits qualify too.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path


def _stopped(e: BaseException) -> int:
    """One line for a run stopped by SIGTERM or Ctrl-C, and the conventional exit status (128 + the signal)."""
    if isinstance(e, Interrupted):  # stopped between steps: the step reached is saved
        print(str(e), file=sys.stderr)
        return e.exit_code
    # A KeyboardInterrupt: Ctrl-C outside the training steps (start-up, final evaluation).
    print("stopped by SIGINT; re-run the same command to resume from the newest checkpoint", file=sys.stderr)
    return 128 + signal.SIGINT


def main(
    config: ml_collections.ConfigDict,
    workdir: str | None,
    *,
    config_path: str,
    sweep: bool = False,
    sweep_shard: str | None = None,
    mode: str = "train",
) -> int:
    """Runs one experiment, or with ``sweep`` its sweep (``sweep_shard``: ``"i/n"``); returns the exit status.

    Expected failures (a bad config, a missing dataset, a diverged run, a workdir
    that cannot be written, a full disk) end with one ``error:`` line on stderr
    instead of a traceback: exit 2 for bad input, found before anything is
    written; exit 1 for a failure mid-run.
    """
    # Orbax and TFDS log every save and read at INFO; the loop prints its own lines.
    logging.set_verbosity(logging.WARNING)
    enable_compilation_cache()
    if sweep or sweep_shard is not None:
        try:
            if not sweep:
                raise ConfigError(f"--sweep_shard={sweep_shard} needs --sweep")
            return _sweep(config, workdir, config_path, sweep_shard)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except (Interrupted, KeyboardInterrupt) as e:  # a trial stopped by SIGTERM / Ctrl-C
            return _stopped(e)
    workdir = workdir or default_workdir(config_path)
    if mode in ("summary", "layers", "enrol"):  # "layers" is the older name of "summary"
        from mlcv.orchestration import enrolment, layers

        try:
            failures.check_workdir(workdir)
            layers.run(config, workdir) if mode != "enrol" else enrolment.run(workdir)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    try:
        failures.check_workdir(workdir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failures.quiet_disk_full_logs()
    import mlcv
    from mlcv.training.checkpoint import CheckpointError
    from mlcv.training.loop import NonFiniteError

    try:
        summary = mlcv.run(config, workdir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt) as e:
        return _stopped(e)
    except Exception as e:  # a file that cannot be written (full disk, read-only): one line, not a traceback
        failure = failures.write_failure(e, workdir)
        if failure is None:
            raise
        print(f"error: {failure[0]}", file=sys.stderr)
        return failure[1]
    print(f"{workdir}: {summary['headline']}, wall time {summary['wall_time_s']:.1f} s")
    return 0
